"""The data folder stays with its owner: everything photocheck creates there is private (folders
0700, files 0600) whatever the umask, and a data folder open to others is reported."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from photocheck.config import default_db_url
from tests.helpers import Cli


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_everything_in_the_data_folder_is_private_whatever_the_umask(umask, demo_copy: Path, tmp_path: Path,
                                                                     monkeypatch):
    home = tmp_path / "share" / "photocheck"  # not there yet: photocheck makes it
    monkeypatch.setenv("PHOTOCHECK_HOME", str(home))
    monkeypatch.delenv("PHOTOCHECK_DB", raising=False)
    cli = Cli(default_db_url(), user="alice")
    old = os.umask(umask)
    try:
        cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
        cli("enroll", demo_copy / "roster" / "photos")
        cli("scan", demo_copy / "sample_images", "--jobs", "1", "--json", home / "scan.json",
            "--csv", home / "scan.csv", "--html", home / "scan.html", expect=1)
        cli("backup", home / "backup.db")
        queue = json.loads(cli("review", "list", "--json").stdout)
        blocked = [i["photo_id"] for i in queue if i["verdict"] == "blocked"]
        assert blocked
        cli("redact", *blocked, "--out", home / "redacted")
        from photocheck.web import create_app

        create_app(default_db_url()).extensions["photocheck_db"].dispose()  # makes the web session secret
        # outside the data folder the umask still decides (reports are meant to be shared)
        outside = tmp_path / "reports"
        outside.mkdir()
        cli("review", "list", "--scan", "1", "--html", outside / "sheet.html")
    finally:
        os.umask(old)

    assert _mode(home) == 0o700
    made = sorted(home.rglob("*"))
    names = {p.relative_to(home).as_posix() for p in made}
    assert {"photocheck.db", "photocheck.key", "backup.db", "scan.json", "scan.csv", "scan.html",
            "web-secret.key", "redacted"} <= names, names
    assert any(n.startswith("redacted/") for n in names), names
    wrong = {p.relative_to(home).as_posix(): f"{_mode(p):04o}" for p in made
             if _mode(p) != (0o700 if p.is_dir() else 0o600)}
    assert not wrong, wrong
    assert _mode(outside / "sheet.html") == 0o666 & ~umask


def test_a_data_folder_open_to_others_is_reported_with_the_fix(tmp_path: Path, monkeypatch, cli):
    home = tmp_path / "data"
    home.mkdir()
    monkeypatch.setenv("PHOTOCHECK_HOME", str(home))
    os.chmod(home, 0o700)
    assert "chmod 700" not in cli("roster", "list").stderr
    os.chmod(home, 0o755)
    err = " ".join(cli("roster", "list").stderr.split())
    assert f"photocheck data folder {home} is open to other accounts" in err
    assert f"chmod 700 {home}" in err
