"""Crash safety and concurrency with real processes: `kill -9` during enroll, scan and sign-off
leaves a database that passes PRAGMA integrity_check, and running again completes with nothing
lost or doubled; a scan and other commands (sign-off among them) on the same database at the
same time both succeed."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.helpers import REPO, Cli

SAMPLES = sorted((REPO / "sample_images").glob("*.jpg"))
REFS = 6
EVENTS = 2 * len(SAMPLES)


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> Path:
    """Reference photos (many distinct files of D0001) and an event folder of small photos."""
    root = tmp_path_factory.mktemp("crash")
    refs = root / "refs" / "D0001"
    refs.mkdir(parents=True)
    ref = Image.open(REPO / "roster" / "photos" / "D0001" / "biden2.jpg").convert("RGB")
    for i in range(REFS):
        im = ref.copy()
        im.thumbnail((520 - 20 * i, 520 - 20 * i))
        im.save(refs / f"ref{i:02d}.jpg", quality=90)
    events = root / "events"
    events.mkdir()
    for i in range(EVENTS // len(SAMPLES)):
        for p in SAMPLES:
            im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
            im.thumbnail((400, 400))  # small: quick to screen on a busy machine
            im.save(events / f"{p.stem}_{i}.jpg", quality=90)
    return root


def photocheck(db: Path, *args: str, user: str = "tester") -> subprocess.Popen:
    env = dict(os.environ, PHOTOCHECK_DB=f"sqlite:///{db}", PHOTOCHECK_USER=user)
    return subprocess.Popen([sys.executable, "-c", "from photocheck.cli import main; main()", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
            n = c.execute(sql).fetchone()[0]
        c.close()
        return n
    except sqlite3.OperationalError:  # not created yet
        return 0


def wait_until(proc: subprocess.Popen, db: Path, sql: str, at_least: int, timeout: float = 120) -> None:
    """Wait until `sql` counts at least `at_least` in `db`, while `proc` is still running."""
    deadline = time.monotonic() + timeout
    while count(db, sql) < at_least:
        assert proc.poll() is None, f"finished before it could be interrupted:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out waiting for progress"
        time.sleep(0.05)


def kill_when(proc: subprocess.Popen, db: Path, sql: str, at_least: int, timeout: float = 120) -> None:
    wait_until(proc, db, sql, at_least, timeout)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as c:
        verdict = c.execute("PRAGMA integrity_check").fetchone()[0]
        fk = c.execute("PRAGMA foreign_key_check").fetchall()
    c.close()
    assert fk == []
    return verdict


def test_kill_9_during_enroll_then_enroll_again(material: Path, tmp_path: Path):
    db = tmp_path / "photocheck.db"
    cli = Cli(f"sqlite:///{db}")
    cli("roster", "import", REPO / "roster" / "no_consent.csv")
    proc = photocheck(db, "enroll", str(material / "refs"))
    kill_when(proc, db, "SELECT count(*) FROM reference_photos", 2)
    assert integrity(db) == "ok"
    done = count(db, "SELECT count(*) FROM reference_photos")
    assert 2 <= done < REFS
    # every photo enrolled before the crash is whole: a photo row and its encrypted encoding
    assert count(db, "SELECT count(*) FROM reference_encodings") == count(
        db, "SELECT count(*) FROM reference_photos WHERE accepted")
    cli("enroll", material / "refs")
    assert integrity(db) == "ok"
    assert count(db, "SELECT count(*) FROM reference_photos") == REFS  # nothing doubled
    assert count(db, "SELECT count(DISTINCT sha256) FROM reference_photos") == REFS
    assert count(db, "SELECT count(*) FROM reference_encodings") == count(
        db, "SELECT count(*) FROM reference_photos WHERE accepted") == REFS
    assert "enrolled" in cli("roster", "list").output  # the key made by the killed process works


@pytest.fixture
def enrolled_db(material: Path, tmp_path: Path) -> Path:
    db = tmp_path / "photocheck.db"
    cli = Cli(f"sqlite:///{db}")
    cli("roster", "import", REPO / "roster" / "no_consent.csv")
    cli("enroll", REPO / "roster" / "photos")
    return db


def test_kill_9_during_scan_then_scan_again_while_other_commands_run(bigger_events: Path, enrolled_db: Path,
                                                                    tmp_path: Path):
    # 18 photos of 1200 px: the resumed scan is still running while four other commands start on a busy machine.
    db = enrolled_db
    events = len(list(bigger_events.iterdir()))
    cli = Cli(f"sqlite:///{db}")
    proc = photocheck(db, "scan", str(bigger_events), "--jobs", "1")
    kill_when(proc, db, "SELECT count(*) FROM photos", 2)
    assert integrity(db) == "ok"
    first = count(db, "SELECT count(*) FROM photos WHERE scan_id = 1")
    assert 2 <= first < events
    assert count(db, "SELECT count(*) FROM faces WHERE photo_id NOT IN (SELECT id FROM photos)") == 0

    # The same command again resumes scan 1; while it writes, other commands work on the same
    # database (WAL + busy timeout).
    proc = photocheck(db, "scan", str(bigger_events), "--jobs", "1")
    try:
        wait_until(proc, db, "SELECT count(*) FROM photos WHERE scan_id = 1", first + 1)
        cli("roster", "import", REPO / "roster" / "no_consent.csv")
        cli("backup", tmp_path / "during-scan.db")
        cli("forget", "NOBODY")
        cli("purge", "--dry-run")
        overlapped = proc.poll() is None
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out  # the listed student's photos are blocked
    assert overlapped, "the scan ended before the other commands ran: make the event set bigger"
    assert integrity(db) == "ok" and integrity(tmp_path / "during-scan.db") == "ok"
    assert count(db, "SELECT count(*) FROM scans") == 1  # resumed, not started over
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 1") == events
    assert count(db, "SELECT count(DISTINCT path) FROM photos WHERE scan_id = 1") == events  # nothing doubled
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 1 AND verdict = 'error'") == 0
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 1 AND verdict = 'blocked'") >= 2
    assert count(db, "SELECT count(*) FROM scans WHERE id = 1 AND status = 'finished'") == 1



def test_kill_9_during_signoff_then_sign_again(material: Path, enrolled_db: Path, tmp_path: Path):
    """A reviewer's batch sign-off killed half-way: every sign-off made is kept, none is doubled,
    and the same command signs the rest."""
    db = enrolled_db
    cli = Cli(f"sqlite:///{db}")
    cli("scan", material / "events", "--jobs", "1", expect=1)
    # Many photos to sign: copies of the same bytes come from the scan cache in seconds.
    burst = tmp_path / "burst"
    burst.mkdir()
    for i in range(30):
        for p in sorted((material / "events").iterdir()):
            (burst / f"{i:02d}_{p.name}").write_bytes(p.read_bytes())
    cli("scan", burst, "--jobs", "1", expect=1)
    total = count(db, "SELECT count(*) FROM photos WHERE scan_id = 2")
    assert total == 30 * EVENTS

    proc = photocheck(db, "review", "sign", "--scan", "2", "--decision", "reject", user="reviewer")
    kill_when(proc, db, "SELECT count(*) FROM signoffs", 10)
    assert integrity(db) == "ok"
    signed = count(db, "SELECT count(*) FROM signoffs")
    assert 10 <= signed < total, "the sign-off finished before it could be killed"
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 2 AND signoff_state = 'rejected'") == signed

    proc = photocheck(db, "review", "sign", "--scan", "2", "--decision", "reject", user="reviewer")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert count(db, "SELECT count(*) FROM signoffs") == total
    assert count(db, "SELECT count(DISTINCT photo_id) FROM signoffs") == total  # nothing doubled
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 2 AND signoff_state = 'rejected'") == total
    cli("audit", "verify")  # exit 0: the hash chain is intact


def test_scan_and_signoff_at_the_same_time_both_succeed(material: Path, enrolled_db: Path, tmp_path: Path):
    db = enrolled_db
    cli = Cli(f"sqlite:///{db}")
    cli("scan", material / "events", "--jobs", "1", expect=1)  # scan 1, to be signed off
    big = tmp_path / "big"  # new bytes, bigger photos, three of each: a scan that takes a while
    big.mkdir()
    copies = 3  # one copy each was not enough once the detector ran in 8 bits: the scan could end first
    for p in SAMPLES:
        im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        im.thumbnail((1600, 1600))
        for i in range(copies):
            im.save(big / f"{p.stem}_{i}.jpg", quality=92 - i)
    scanning = photocheck(db, "scan", str(big), "--jobs", "1")
    try:
        wait_until(scanning, db, "SELECT count(*) FROM scans WHERE id = 2", 1)
        signing = photocheck(db, "review", "sign", "--scan", "1", "--decision", "reject", user="reviewer")
        sign_out, _ = signing.communicate(timeout=300)
        overlapped = scanning.poll() is None
        scan_out, _ = scanning.communicate(timeout=300)
    finally:
        if scanning.poll() is None:
            scanning.kill()
    assert signing.returncode == 0, sign_out
    assert scanning.returncode == 1, scan_out  # the listed student is in two of them
    assert overlapped, "the scan ended before the sign-off ran"
    assert integrity(db) == "ok"
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 1 AND signoff_state = 'rejected'") == EVENTS
    assert count(db, "SELECT count(*) FROM photos WHERE scan_id = 2") == copies * len(SAMPLES)


def test_ctrl_c_during_scan_says_how_to_resume_and_the_same_command_does(bigger_events: Path, enrolled_db: Path):
    db = enrolled_db
    events = len(list(bigger_events.iterdir()))  # 1200 px photos: the scan is still running when Ctrl-C comes
    proc = photocheck(db, "scan", str(bigger_events), "--jobs", "1")
    wait_until(proc, db, "SELECT count(*) FROM photos", 2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "run the same command again" in out
    assert count(db, "SELECT count(*) FROM scans WHERE status = 'interrupted'") == 1
    stored = count(db, "SELECT count(*) FROM photos")
    assert 2 <= stored < events

    out, _ = photocheck(db, "scan", str(bigger_events), "--jobs", "1").communicate(timeout=300)
    assert f"{stored} photo(s) were already screened" in out
    assert count(db, "SELECT count(*) FROM scans") == 1
    assert count(db, "SELECT count(*) FROM photos") == count(db, "SELECT count(DISTINCT path) FROM photos") == events


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_bytes()
            except OSError:
                continue
            kids.setdefault(int(stat[stat.rindex(b")") + 2:].split()[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


@pytest.fixture(scope="module")
def bigger_events(tmp_path_factory) -> Path:
    """18 photos of 1200 px: a scan with workers takes long enough to be interrupted mid-way."""
    events = tmp_path_factory.mktemp("bigger")
    for i in range(6):
        for p in SAMPLES:
            im = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
            im.thumbnail((1200, 1200))
            im.save(events / f"{p.stem}_{i}.jpg", quality=90)
    return events


def test_a_killed_worker_is_replaced_and_its_photos_screened_again(bigger_events: Path, enrolled_db: Path):
    """kill -9 of the worker process (as the kernel's out-of-memory killer would): the scan starts a
    new worker, screens the photos the dead one had in flight again, and finishes with every photo
    once and none of them an `error`."""
    events = bigger_events
    n = len(list(events.iterdir()))
    db = enrolled_db
    proc = photocheck(db, "scan", str(events), "--jobs", "2")
    try:
        wait_until(proc, db, "SELECT count(*) FROM photos", 1)
        workers = _descendants(proc.pid)  # the scan's worker process(es)
        assert workers, "no worker process found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1), out
    assert count(db, "SELECT count(*) FROM scans WHERE status = 'finished'") == 1
    assert count(db, "SELECT count(*) FROM photos") == count(db, "SELECT count(DISTINCT path) FROM photos") == n
    assert count(db, "SELECT count(*) FROM photos WHERE verdict = 'error'") == 0, out
    assert count(db, "SELECT count(*) FROM photos WHERE verdict = 'blocked'") >= 6


def _running(pid: int) -> bool:
    try:
        return b") Z" not in Path(f"/proc/{pid}/stat").read_bytes()  # a zombie has exited
    except OSError:
        return False


def test_kill_9_of_a_scan_with_workers_leaves_no_worker_behind(bigger_events: Path, enrolled_db: Path):
    """A worker whose scan is killed stops by itself (its task pipe closes), instead of holding a
    loaded engine forever."""
    proc = photocheck(enrolled_db, "scan", str(bigger_events), "--jobs", "2")
    wait_until(proc, enrolled_db, "SELECT count(*) FROM photos", 1)
    workers = _descendants(proc.pid)
    assert workers, "no worker process found"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its scan"
        time.sleep(0.1)
