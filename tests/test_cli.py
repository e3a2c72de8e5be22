"""One CliRunner test (or more) per command, on the shipped demo and real images."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated

import pytest
import typer
from PIL import Image

from tests.helpers import REPO, load_report

ROSTER = REPO / "roster" / "no_consent.csv"


def by_name(report: dict) -> dict[str, dict]:
    return {Path(im["path"]).name: im for im in report["images"]}


@pytest.mark.parametrize("args", [[], ["roster"], ["roster", "import"], ["roster", "list"], ["enroll"], ["scan"]])
def test_help_teaches(cli, args):
    out = cli(*args, "--help").output
    assert "Usage" in out
    if args == ["scan"]:
        assert "BLOCKED" in out and "sign-off" in out and "Exit status" in out


def test_flags_show_as_plain_flags_in_help(cli):
    """--version, --help and the other on/off options take no value, so --help shows no type after them."""
    from photocheck import __version__

    for args in ([], ["review", "list"], ["roster", "import"]):
        out = cli(*args, "--help").output
        assert "<bool>" not in out and "--help" in out, out
    assert "--version" in cli("--help").output
    assert "--json" in cli("review", "list", "--help").output
    assert cli("--version").output.strip() == f"photocheck {__version__}"


def _typer_eager_app():
    """`photocheck` as typer builds it with every command registered up front (cli/lazy.py builds one)."""
    import importlib

    import typer

    from photocheck.cli import _root, app
    from photocheck.cli.lazy import COMMANDS

    eager = typer.Typer(name="photocheck", help=app.info.help, no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False)
    eager.callback()(_root)
    order = ["roster", "enroll", "scan", "check-text", "review", "redact", "publish", "recheck", "audit", "keys",
             "forget", "purge", "backup", "user", "serve"]  # as registered before the lazy group
    assert sorted(order) == sorted(COMMANDS)
    for name in order:
        module, attr = COMMANDS[name]
        target = getattr(importlib.import_module(f"photocheck.cli.{module}"), attr)
        if isinstance(target, typer.Typer):
            eager.add_typer(target, name=name)
        else:
            eager.command(name)(target)
    return eager


def test_help_and_usage_errors_are_those_of_the_eager_typer_app(cli):
    """Building only the command that runs changes no help text, command order or usage error."""
    import typer

    from photocheck.cli import app
    from photocheck.cli.lazy import COMMANDS

    eager = _typer_eager_app()
    root = typer.main.get_command(eager)
    paths = [[]] + [[name] for name in COMMANDS]
    paths += [[name, sub] for name in COMMANDS for sub in getattr(root.commands[name], "commands", {})]
    runs = [[*p, "--help"] for p in paths] + [[], ["scna"], ["roster", "imprt"], ["scan"], ["review", "sign"]]
    for args in runs:
        want = cli.runner.invoke(eager, args, env={"COLUMNS": "120"})
        got = cli.runner.invoke(app, args, env={"COLUMNS": "120"})
        assert (got.exit_code, got.output) == (want.exit_code, want.output), args
    assert "Did you mean 'scan'?" in cli("scna", expect=2).output
    assert len(paths) > 25  # the sub-commands too


@pytest.mark.parametrize("value, message", [("0", "Input should be greater than or equal to 1"),
                                            ("x", "Input should be a valid integer")])
def test_bad_option_values_are_still_refused_by_typer(cli, tmp_path: Path, value, message):
    """Parameters are coerced through typer's pydantic adapter only when given (cli/lazy.py): still checked."""
    out = cli("scan", tmp_path, "--jobs", value, expect=2).output
    assert message in " ".join(out.split())


def test_typer_internals_are_only_touched_on_the_tested_typer(monkeypatch):
    """cli/lazy.py's pydantic deferral is on with uv.lock's typer, and refuses any other release,
    leaving typer's own coercion in place (a pipx install may bring a newer typer)."""
    import typer.core

    from photocheck.cli import lazy

    assert lazy.DEFERRED and typer.core.build_runtime_param is not lazy._typer_runtime_param
    monkeypatch.setattr(typer.core, "build_runtime_param", lazy._typer_runtime_param)
    assert lazy.defer_pydantic("0.30.0") is False
    assert typer.core.build_runtime_param is lazy._typer_runtime_param


@pytest.mark.parametrize("args", [["a.jpg", "sub/a.jpg"], ["./a.jpg", "x/../a.jpg//"], ["missing/"], ["sub"],
                                  ["./sub/"], ["a.jpg", "--one", "sub//"], ["a.jpg", "--one", "./a.jpg"]])
def test_paths_are_coerced_and_refused_as_typer_itself_does(tmp_path: Path, monkeypatch, args):
    """cli/lazy.py turns path arguments into Paths without typer's pydantic adapter: same values,
    and the same refusals, quoting the path as typed."""
    import typer.core
    from typer.testing import CliRunner

    from photocheck.cli import lazy

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub" / "a.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)

    def run():
        one_app = typer.Typer()

        @one_app.command()
        def show(paths: Annotated[list[Path], typer.Argument(dir_okay=False)],
                 one: Annotated[Path | None, typer.Option("--one", file_okay=False)] = None) -> None:
            typer.echo(repr((paths, one)))

        result = CliRunner().invoke(one_app, args, env={"COLUMNS": "120"})
        return result.exit_code, result.output

    ours = run()
    monkeypatch.setattr(typer.core, "build_runtime_param", lazy._typer_runtime_param)
    assert ours == run()


@pytest.mark.backends("sqlite", "postgresql")
def test_roster_import_and_reimport_reports_changes(cli, tmp_path: Path):
    first = tmp_path / "a.csv"
    first.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                     "S1,Ann,Lee,North,9,all\nS2,Bo,Kim,North,10,all\nS3,Cy,Ng,North,11,all\n")
    out = cli("roster", "import", first).output
    assert "3 added" in out
    second = tmp_path / "b.csv"
    second.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                      "S1,Ann,Lee,North,9,all\nS2,Bo,Kim,North,11,all\nS4,Di,Oh,North,12,all\n")
    out = cli("roster", "import", second).output
    assert "1 added, 1 changed, 1 removed, 1 unchanged" in out
    assert "removed: S3" in out
    listing = cli("roster", "list").output
    assert "S4" in listing and "S3" not in listing and "UNPROTECTED" in listing


@pytest.mark.backends("sqlite", "postgresql")
def test_roster_import_bad_row_names_file_line_column_and_imports_nothing(cli, tmp_path: Path):
    good = tmp_path / "good.csv"
    good.write_text("student_id,first_name,last_name,campus,grade,opt_out\nS1,Ann,Lee,North,9,all\n")
    cli("roster", "import", good)
    bad = tmp_path / "bad.csv"
    bad.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                   "S7,Eve,Ray,North,9,all\n,No,Id,North,9,all\nS8,Flo,Zed,North,9,sometimes\n")
    result = cli("roster", "import", bad, expect=1)
    assert "bad.csv:3" in result.output and "student_id" in result.output
    assert "bad.csv:4" in result.output and "opt_out" in result.output
    listing = cli("roster", "list").output
    assert "S1" in listing and "S7" not in listing  # nothing half-imported


@pytest.mark.backends("sqlite", "postgresql")
def test_roster_import_with_mapping(cli):
    result = cli("roster", "import", REPO / "roster" / "examples" / "powerschool_students.csv",
                 "--mapping", REPO / "roster" / "mappings" / "powerschool.toml")
    assert "added" in result.output
    assert "Imported 0" not in result.output


def test_roster_import_missing_file_is_usage_error(cli, tmp_path: Path):
    assert "no such file" in cli("roster", "import", tmp_path / "nope.csv", expect=2).output


@pytest.mark.backends("sqlite", "postgresql")
def test_enroll_reports_rejects_and_unprotected(cli, demo_copy: Path, tmp_path: Path):
    roster = tmp_path / "r.csv"
    roster.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                      "D0001,Joseph,Biden,Demo,12,all\nD0009,No,Photo,Demo,9,all\nD0010,Bad,Photo,Demo,9,all\n")
    cli("roster", "import", roster)
    refs = demo_copy / "roster" / "photos"
    (refs / "D0010").mkdir()
    Image.new("RGB", (640, 480), (120, 160, 90)).save(refs / "D0010" / "blank.jpg")  # no face
    (refs / "X9999").mkdir()  # not on the list: must be skipped, never stored
    Image.new("RGB", (64, 64)).save(refs / "X9999" / "someone.jpg")
    result = cli("enroll", refs, expect=1)
    out = result.output
    assert "rejected" in out and "no face found" in out
    assert "X9999" in out and "not on the no-consent list" in out
    assert "UNPROTECTED" in out and "D0009" in out and "D0010" in out
    listing = cli("roster", "list").output
    assert "enrolled" in listing


def test_enroll_before_any_roster_import_is_refused_and_stores_nothing(cli, demo_copy: Path,
                                                                     _photocheck_home: Path, db_url: str):
    out = " ".join(cli("enroll", demo_copy / "roster" / "photos", expect=2).output.split())
    assert "import the no-consent list first: photocheck roster import FILE" in out
    assert not (_photocheck_home / "photocheck.key").exists()
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        for table in ("audit_events", "reference_photos", "reference_encodings", "students"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_enroll_missing_dir_is_usage_error(cli, tmp_path: Path):
    assert cli("enroll", tmp_path / "missing", expect=2).exit_code == 2


def test_scan_demo_blocks_listed_student(cli, demo_copy: Path, tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    out_json, out_csv, out_html = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.html"
    result = cli("scan", demo_copy / "sample_images", "--json", out_json, "--csv", out_csv, "--html", out_html,
                 expect=1)
    assert "pending a second person's sign-off" in result.output
    images = by_name(load_report(out_json))
    assert images["biden1.jpg"]["verdict"] == "blocked"
    assert images["together_sideways.jpg"]["verdict"] == "blocked"  # EXIF orientation 6 applied
    assert images["obama1.jpg"]["verdict"] == "clear"
    assert images["obama3.jpg"]["verdict"] == "clear"
    assert {f["student_id"] for f in images["together_sideways.jpg"]["faces"]} == {"D0001", None}
    assert "biden1.jpg" in out_csv.read_text(encoding="utf-8-sig")
    assert "data:image/jpeg;base64" in out_html.read_text()


@pytest.mark.backends("sqlite", "postgresql")
def test_scan_without_roster_is_configuration_error(cli, demo_copy: Path):
    result = cli("scan", demo_copy / "sample_images", expect=2)
    assert "no roster imported" in result.output


def test_scan_missing_path_is_usage_error(cli, tmp_path: Path):
    cli("roster", "import", ROSTER)
    assert "no such file" in cli("scan", tmp_path / "nope", expect=2).output


def test_bad_database_url_is_configuration_error(tmp_path: Path):
    from tests.helpers import Cli

    result = Cli("notadb://x")("roster", "list", expect=2)
    assert "database" in result.output
