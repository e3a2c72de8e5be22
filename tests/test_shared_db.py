"""One database shared by a district: reviewers racing in separate processes, concurrent audit
appends, two campuses with their own rosters, and (PostgreSQL) forget/backup.

Run on SQLite and on the real PostgreSQL server at $PHOTOCHECK_TEST_PG (see tests/conftest.py).
Racing is done with real processes, each with its own connections, started together.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from photocheck import audit
from photocheck.db import open_database
from photocheck.db.models import AuditEvent, Photo, ReferenceEncoding, Scan, Signoff, Student
from photocheck.images import file_sha256
from tests.helpers import REPO, Cli, load_report

pytestmark = pytest.mark.backends("sqlite", "postgresql")

HEADER = "student_id,first_name,last_name,campus,grade,opt_out\n"
PHOTOS = 12
REVIEWERS = 4


def _queue_of_clear_photos(db_url: str, folder: Path, n: int) -> list[int]:
    """A finished scan by alice of n clear photos (real files; results stored directly, as a
    scan of face-less photos would): a sign-off queue without running the face engine."""
    folder.mkdir()
    src = REPO / "sample_images" / "obama3.jpg"
    db = open_database(db_url)
    try:
        with db.session(immediate=True) as s:
            scan = Scan(owner="alice", status="finished", roots="[]", thresholds="{}", model="{}",
                        roster_fingerprint="x")
            s.add(scan)
            s.flush()
            for i in range(n):
                f = folder / f"p{i:02d}.jpg"
                f.write_bytes(src.read_bytes() + f"copy{i}".encode())  # distinct sha256
                s.add(Photo(scan_id=scan.id, path=str(f), sha256=file_sha256(f), verdict="clear",
                            channel_verdicts=json.dumps({"web": "clear"})))
            s.flush()
            audit.record(s, actor="alice", action="scan.finish", scan_id=scan.id)
        with db.session() as s:
            return list(s.scalars(select(Photo.id).order_by(Photo.id)))
    finally:
        db.dispose()


def _reviewer(url: str, name: str, photo_ids: list[int], start, results) -> None:
    """One reviewer's process: its own connections; signs every photo, in its own order."""
    from photocheck.review import SignoffError, sign_one

    db = open_database(url, migrate=False)
    start.wait()
    won = 0
    for pid in photo_ids:
        try:
            won += sign_one(db, pid, reviewer=name, decision="approve").ok
        except SignoffError:
            pass
    db.dispose()
    results.put((name, won))


def test_reviewers_racing_in_separate_processes_each_photo_signed_once(db_url: str, tmp_path: Path):
    ids = _queue_of_clear_photos(db_url, tmp_path / "imgs", PHOTOS)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(REVIEWERS), ctx.Queue()
    procs = [ctx.Process(target=_reviewer, args=(db_url, f"reviewer{i}", ids[i:] + ids[:i], start, results))
             for i in range(REVIEWERS)]
    for p in procs:
        p.start()
    wins = dict(results.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(wins.values()) == PHOTOS  # each photo won by exactly one reviewer
    db = open_database(db_url)
    with db.session() as s:
        for pid in ids:
            signoffs = s.scalars(select(Signoff).where(Signoff.photo_id == pid)).all()
            assert len(signoffs) == 1 and signoffs[0].current
            photo = s.get(Photo, pid)
            assert photo.signoff_state == "approved" and photo.version == 1
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "signoff")).all()
        assert len(events) == PHOTOS
        per_reviewer = {}
        for e in events:
            per_reviewer[e.actor] = per_reviewer.get(e.actor, 0) + 1
        assert per_reviewer == {k: v for k, v in wins.items() if v}
    check = audit.verify(db)
    assert check.ok and check.events == PHOTOS + 1, check.problems
    db.dispose()


def _appender(url: str, name: str, n: int, start) -> None:
    db = open_database(url, migrate=False)
    start.wait()
    for i in range(n):
        with db.session(immediate=True) as s:
            audit.record(s, actor=name, action="test.append", i=i)
    db.dispose()


def test_concurrent_audit_appends_keep_one_unbroken_chain(db_url: str):
    open_database(db_url).dispose()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(3)
    procs = [ctx.Process(target=_appender, args=(db_url, f"writer{i}", 25, start)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    db = open_database(db_url)
    check = audit.verify(db)
    assert check.ok and check.events == 75, check.problems
    with db.session() as s:
        assert s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all() == list(range(1, 76))
    db.dispose()


def test_two_campuses_import_their_own_rosters_into_one_database(db_url: str, tmp_path: Path, demo_copy: Path):
    north, south = Cli(db_url, user="north-admin"), Cli(db_url, user="south-admin")
    nf, sf = tmp_path / "north.csv", tmp_path / "south.csv"
    nf.write_text(HEADER + "N1,Ann,Lee,North,9,all\nN2,Bo,Kim,North,10,all\n")
    sf.write_text(HEADER + "D0001,Joseph,Biden,South,12,all\nS2,Cy,Ng,South,11,all\n")
    assert "for campus North: 2 added" in north("roster", "import", nf, "--campus", "North").output
    assert "for campus south: 2 added" in south("roster", "import", sf, "--campus", "south").output
    south("enroll", demo_copy / "roster" / "photos", expect=1)  # D0001's photo; exit 1: others unprotected
    # North drops N2 (consent given): South's students and their encodings stay.
    nf.write_text(HEADER + "N1,Ann,Lee,North,9,all\n")
    out = north("roster", "import", nf, "--campus", "North").output
    assert "1 removed" in out and "removed: N2" in out
    db = open_database(db_url)
    with db.session() as s:
        assert sorted(s.scalars(select(Student.student_id))) == ["D0001", "N1", "S2"]
        assert s.scalar(select(func.count()).select_from(ReferenceEncoding)) == 1
    listing = north("roster", "list").output
    assert "D0001" in listing and "UNPROTECTED" in listing
    # A row of another campus in a campus import: refused, nothing changed.
    sf.write_text(HEADER + "S2,Cy,Ng,South,11,all\nN1,Ann,Lee,North,9,all\n")
    out = south("roster", "import", sf, "--campus", "South", expect=1).output
    assert "south.csv:3" in out and "'North' is not campus 'South'" in " ".join(out.split())
    # Every listed student counts in every campus's scans: North's scan blocks South's D0001.
    report = tmp_path / "north.json"
    north("scan", demo_copy / "sample_images", "--jobs", "1", "--json", report, expect=1)
    verdicts = {Path(im["path"]).name: im["verdict"] for im in load_report(report)["images"]}
    assert verdicts["biden1.jpg"] == "blocked"
    # Each campus reviews its own scan: the queue of one scan holds that scan's photos only.
    south_imgs = demo_copy / "south_imgs"
    south_imgs.mkdir()
    shutil.copy(demo_copy / "sample_images" / "obama3.jpg", south_imgs / "obama3.jpg")
    south("scan", south_imgs, "--jobs", "1", expect=1)  # review: N1 and S2 are not enrolled
    with db.session() as s:
        north_scan, south_scan = s.scalars(select(Scan.id).order_by(Scan.id)).all()
    items = json.loads(south("review", "list", "--scan", south_scan, "--json").output)
    assert [Path(i["path"]).name for i in items] == ["obama3.jpg"] and items[0]["scanned_by"] == "south-admin"
    assert audit.verify(db).ok
    db.dispose()


@pytest.mark.backends("postgresql")
def test_machines_opening_a_new_postgresql_database_at_once_migrate_it_once(db_url: str):
    import threading

    from photocheck.db.session import HEAD_REVISION

    barrier, errors = threading.Barrier(4), []

    def open_it() -> None:
        barrier.wait()
        try:
            open_database(db_url).dispose()
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=open_it, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "opening hung (migrations waiting on each other)"
    assert errors == []
    db = open_database(db_url)
    with db.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD_REVISION]
    db.dispose()


# --- PostgreSQL only: forgetting and backups ------------------------------------------------------

def _pg_data_files(db) -> list[Path]:
    """The files of this database's tables in the server's data folder (readable when the test runs
    as root or as the server's owner, as in .ci/run)."""
    pg_dir = os.environ.get("PHOTOCHECK_PG_DIR")
    if not pg_dir or not os.access(Path(pg_dir) / "data", os.R_OK):
        pytest.skip("the PostgreSQL data folder is not readable here ($PHOTOCHECK_PG_DIR from .ci/postgres)")
    with db.engine.connect() as c:
        oid = c.execute(text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar()
    return [p for p in (Path(pg_dir) / "data" / "base" / str(oid)).iterdir() if p.is_file()]


@pytest.mark.backends("postgresql")
def test_forget_on_postgresql_leaves_no_encoding_byte_in_the_table_files(db_url: str, demo_copy: Path):
    cli = Cli(db_url)
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    db = open_database(db_url)
    with db.session() as s:
        (blob,) = s.scalars(text("SELECT vector FROM reference_encodings")).all()
    needle = bytes(blob)[12:60]  # ciphertext: random bytes, stored as they are (not compressed)
    _checkpoint(db)  # the row is in the table's file now, as it would be after a while
    assert any(needle in f.read_bytes() for f in _pg_data_files(db))
    out = cli("forget", "D0001").output
    assert "warning" not in out
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM reference_encodings")) == 0
    _checkpoint(db)
    assert [f.name for f in _pg_data_files(db) if needle in f.read_bytes()] == []
    db.dispose()


def _checkpoint(db) -> None:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        try:
            c.execute(text("CHECKPOINT"))
        except Exception:
            pytest.skip("this role may not run CHECKPOINT (.ci/postgres grants pg_checkpoint)")


@pytest.mark.backends("postgresql")
def test_backup_on_postgresql_is_a_checked_pg_dump_archive(db_url: str, demo_copy: Path, tmp_path: Path):
    if not shutil.which("pg_restore"):
        pytest.skip("pg_dump/pg_restore are not on PATH")
    cli = Cli(db_url)
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    dest = tmp_path / "district.dump"
    out = " ".join(cli("backup", dest).output.split())
    assert "Backup written to" in out and "key is not in it" in out
    assert dest.stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(["pg_restore", "--list", str(dest)], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public students" in listing and "TABLE DATA public reference_encodings" in listing
    db = open_database(db_url)
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM protection_events WHERE action = 'backup'")) == 1
        assert s.scalar(select(func.count()).select_from(Student)) == 1
    db.dispose()


@pytest.mark.backends("postgresql")
def test_keys_rotate_and_purge_on_postgresql_leave_no_old_ciphertext(db_url: str, demo_copy: Path):
    from photocheck.model_files import model_info
    from photocheck.students import load_references

    cli = Cli(db_url)
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    db = open_database(db_url)

    def ciphertext() -> bytes:
        with db.session() as s:
            (blob,) = s.scalars(text("SELECT vector FROM reference_encodings")).all()
        return bytes(blob)[12:60]

    old = ciphertext()
    _checkpoint(db)
    assert "1 encoding(s) re-encrypted" in " ".join(cli("keys", "rotate").output.split())
    new = ciphertext()
    _checkpoint(db)
    data = b"".join(f.read_bytes() for f in _pg_data_files(db))
    assert old not in data and new in data
    m = model_info()["encoder"]
    refs = load_references(db, m["name"], m["version"])  # decrypts with the new key
    assert refs.student_ids == ["D0001"] and not refs.unprotected
    with db.engine.begin() as c:  # the enrolment happened 400 days ago
        c.execute(text("UPDATE reference_photos SET created_at = now() - interval '400 days'"))
    out = " ".join(cli("purge").output.split())
    assert "1 encoding(s) and 1 reference photo record(s)" in out and "warning" not in out
    _checkpoint(db)
    assert new not in b"".join(f.read_bytes() for f in _pg_data_files(db))
    db.dispose()
