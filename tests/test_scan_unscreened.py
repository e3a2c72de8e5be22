"""Nothing unscreened may look screened: a folder or file the scan found but could not read, and
a photo that changed or vanished while it was screened, are `error` items in every report and in
the sign-off queue, and the scan exits 1. Identical files are screened once, each reported.
Real engine, real database, real files and permissions."""
from __future__ import annotations

import csv
import ctypes
import os
import shutil
import subprocess
import sys
from html import escape as html_escape
from pathlib import Path

import pytest

from photocheck.db import open_database
from photocheck.db.models import Photo
from photocheck.reports import write_reports
from photocheck.review import queue, scan_summary
from photocheck.scan import scan
from tests.helpers import REPO, load_report

PHOTOCHECK = Path(sys.executable).parent / "photocheck"
SAMPLES = REPO / "sample_images"

# Linux capabilities that let root read and list any file whatever its permission bits.
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _without_root_read_override() -> None:
    """preexec_fn: the child (and its workers) keep uid 0 but lose the capabilities that bypass
    permission bits, so a mode-000 folder is unlistable for it as for any user. (Switching to
    `nobody` instead would also lock it out of an interpreter installed under /root.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_scan_cli(db_url: str, *args) -> subprocess.CompletedProcess:
    """`photocheck scan ...` in its own process, where permission bits apply even when run as root."""
    env = {**os.environ, "PHOTOCHECK_DB": db_url, "PHOTOCHECK_USER": "tester", "COLUMNS": "200"}
    return subprocess.run([str(PHOTOCHECK), "scan", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600, preexec_fn=_without_root_read_override if os.geteuid() == 0 else None)


# SQLite only: the test PostgreSQL server's socket is out of reach of a process that respects
# permission bits. The error items are plain photo rows (the other tests here cover PostgreSQL).
def test_unreadable_folder_and_files_are_errors_everywhere_and_the_scan_exits_1(cli, db_url: str, tmp_path: Path):
    event = tmp_path / "event"
    (event / "locked").mkdir(parents=True)
    shutil.copy(SAMPLES / "obama1.jpg", event / "a_good.jpg")
    shutil.copy(SAMPLES / "biden1.jpg", event / "locked" / "inside.jpg")   # a photo nobody can list
    shutil.copy(SAMPLES / "biden1.jpg", event / "locked_photo.jpg")        # a photo nobody can read
    shutil.copy(SAMPLES / "biden1.jpg", event / "IMG_0001")                # no extension: content unknown
    (event / "notes.txt").write_text("not a photo")                        # read, not an image: ignored
    day2 = tmp_path / "closed" / "day2"  # a folder given, inside one that may not be searched
    day2.mkdir(parents=True)
    shutil.copy(SAMPLES / "biden1.jpg", day2 / "x.jpg")
    locked = [event / "locked", event / "locked_photo.jpg", event / "IMG_0001", day2.parent]
    # An empty list: every readable photo is clear, so the exit status can only come from the errors.
    empty = tmp_path / "empty.csv"
    empty.write_text("student_id,first_name,last_name,campus,grade,opt_out\n")
    cli("roster", "import", empty)
    reports = {k: tmp_path / f"r.{k}" for k in ("json", "csv", "html")}
    for p in locked:
        p.chmod(0)
    try:
        proc = _run_scan_cli(db_url, event, day2, "--jobs", "1", "--json", reports["json"], "--csv", reports["csv"],
                             "--html", reports["html"])
    finally:
        for p in locked:
            p.chmod(0o755)
    assert proc.returncode == 1, proc.stdout + proc.stderr

    expected = {  # path -> what its reason must say besides the path
        str(event / "locked"): "cannot list folder",
        str(event / "locked_photo.jpg"): "cannot read file",
        str(event / "IMG_0001"): "cannot read file",
        str(day2): "cannot examine",
    }
    data = load_report(reports["json"])
    images = {im["path"]: im for im in data["images"]}
    assert set(images) == {str(event / "a_good.jpg"), *expected}  # notes.txt is no photo: not an item
    assert images[str(event / "a_good.jpg")]["verdict"] == "clear"
    assert data["counts"] == {"error": 4, "blocked": 0, "review": 0, "clear": 1}
    for path, what in expected.items():
        im = images[path]
        assert im["verdict"] == "error" and not im["faces"], im
        assert im["error"] == im["reasons"][0] and im["error"].startswith(f"{what} {path}: "), im
        assert "Permission denied [EACCES]" in im["error"], im
        assert all(v == "error" for v in im["channel_verdicts"].values()) and im["channel_verdicts"], im
    rows = {r["path"]: r for r in csv.DictReader(reports["csv"].read_text(encoding="utf-8-sig").splitlines())}
    html = reports["html"].read_text(encoding="utf-8")
    for path in expected:
        assert rows[path]["verdict"] == "error" and rows[path]["error"] == images[path]["error"]
        assert html_escape(images[path]["error"]) in html  # the technical detail, beside a plain reason
    assert html.count("could not be opened (no permission, or a network share dropped)") == 1

    db = open_database(db_url)
    items = {i.path: i for i in queue(db, scan_id=data["scan"]["id"])}
    assert set(items) == set(images)
    for path in expected:
        assert items[path].verdict == "error" and items[path].reasons == images[path]["reasons"]
        assert items[path].state == "pending"
    stored = {p.path: p for p in scan_summary(db, data["scan"]["id"]).photos}
    assert {p: stored[p].error for p in expected} == {p: images[p]["error"] for p in expected}


def _changing_hook(changes: dict[str, callable]):
    def on_screened(path: str) -> None:
        if (change := changes.get(Path(path).name)) is not None:
            change(Path(path))
    return on_screened


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_photo_changed_or_gone_while_screened_is_an_error_never_a_stale_verdict(cli, demo_copy: Path,
                                                                                   db_url: str, tmp_path: Path,
                                                                                   jobs: int):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("changed.jpg", "gone.jpg", "kept.jpg"):
        shutil.copy(SAMPLES / "biden1.jpg", batch / name)  # the listed student: blocked if it stood
    (batch / "changed.jpg").write_bytes((SAMPLES / "biden1.jpg").read_bytes() + b"trailer")  # distinct bytes
    (batch / "gone.jpg").write_bytes((SAMPLES / "biden1.jpg").read_bytes() + b"other")
    # As each comes back from screening, one file is replaced by another photo and one deleted.
    changes = {"changed.jpg": lambda p: p.write_bytes((SAMPLES / "obama1.jpg").read_bytes()),
               "gone.jpg": lambda p: p.unlink()}
    db = open_database(db_url)
    outcome = scan(db, [batch], owner="t", jobs=jobs, on_screened=_changing_hook(changes))
    got = {Path(p.path).name: p for p in outcome.summary.photos}
    assert got["kept.jpg"].verdict == "blocked"
    changed, gone = got["changed.jpg"], got["gone.jpg"]
    assert changed.verdict == "error" and not changed.faces
    assert changed.error == f"changed while being screened: {batch / 'changed.jpg'} no longer holds the bytes " \
                            "that were screened; scan it again"
    assert gone.verdict == "error" and not gone.faces
    assert gone.error == f"vanished while being screened: {batch / 'gone.jpg'}: No such file or directory [ENOENT]"
    write_reports(outcome.summary, json=tmp_path / "r.json")
    report = {Path(im["path"]).name: im for im in load_report(tmp_path / "r.json")["images"]}
    assert report["changed.jpg"]["verdict"] == report["gone.jpg"]["verdict"] == "error"
    with db.session() as s:
        rows = {Path(p.path).name: p for p in s.query(Photo).filter_by(scan_id=outcome.summary.scan_id)}
        assert rows["changed.jpg"].verdict == rows["gone.jpg"].verdict == "error"
        assert not rows["changed.jpg"].faces and rows["changed.jpg"].sha256 is None
    assert {i.verdict for i in queue(db, scan_id=outcome.summary.scan_id)
            if Path(i.path).name != "kept.jpg"} == {"error"}


@pytest.mark.backends("sqlite", "postgresql")
@pytest.mark.parametrize("jobs", [1, 2])
def test_identical_files_are_screened_once_and_each_reported(cli, demo_copy: Path, db_url: str, tmp_path: Path,
                                                             jobs: int):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "batch"
    (batch / "sub").mkdir(parents=True)
    for dest in ("a.jpg", "sub/b.jpg", "sub/c.jpg"):
        shutil.copy(SAMPLES / "biden1.jpg", batch / dest)  # three copies of one photo
    shutil.copy(SAMPLES / "obama1.jpg", batch / "d.jpg")
    db = open_database(db_url)
    outcome = scan(db, [batch], owner="t", jobs=jobs)
    assert (outcome.screened, outcome.duplicates, outcome.cached) == (2, 2, 0)
    got = {Path(p.path).relative_to(batch).as_posix(): p for p in outcome.summary.photos}
    assert sorted(got) == ["a.jpg", "d.jpg", "sub/b.jpg", "sub/c.jpg"]
    first = got["a.jpg"]
    assert first.verdict == "blocked" and any(f.student_id == "D0001" for f in first.faces)
    for copy in ("sub/b.jpg", "sub/c.jpg"):
        p = got[copy]
        assert (p.verdict, p.reasons, p.faces, p.sha256, p.channel_verdicts) == \
               (first.verdict, first.reasons, first.faces, first.sha256, first.channel_verdicts)
        assert p.photo_id != first.photo_id
    assert got["d.jpg"].sha256 != first.sha256
    write_reports(outcome.summary, json=tmp_path / "r.json")
    images = {Path(im["path"]).relative_to(batch).as_posix(): im for im in load_report(tmp_path / "r.json")["images"]}
    assert images["sub/b.jpg"]["faces"] == images["sub/c.jpg"]["faces"] == images["a.jpg"]["faces"]
    with db.session() as s:
        rows = {Path(p.path).relative_to(batch).as_posix(): p
                for p in s.query(Photo).filter_by(scan_id=outcome.summary.scan_id)}
        assert len(rows) == 4 and len(rows["sub/b.jpg"].faces) == len(rows["a.jpg"].faces)
        assert rows["sub/b.jpg"].cached_from == rows["sub/c.jpg"].cached_from == rows["a.jpg"].id
    assert len(queue(db, scan_id=outcome.summary.scan_id)) == 4


def test_an_identical_copy_is_screened_itself_when_the_first_could_not_stand(cli, demo_copy: Path, db_url: str,
                                                                             tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(SAMPLES / "biden1.jpg", batch / name)
    # a.jpg (screened for all three) changes while screened: its error is not passed on.
    hook = _changing_hook({"a.jpg": lambda p: p.write_bytes((SAMPLES / "obama1.jpg").read_bytes())})
    outcome = scan(open_database(db_url), [batch], owner="t", jobs=1, on_screened=hook)
    got = {Path(p.path).name: p.verdict for p in outcome.summary.photos}
    assert got == {"a.jpg": "error", "b.jpg": "blocked", "c.jpg": "blocked"}
    assert (outcome.screened, outcome.duplicates) == (3, 0)
