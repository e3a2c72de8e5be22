"""The scan's stat fast path (photocheck/filestat.py) — real engine, real database, real files.

A file's sha256 is reused without reading it only when its (device, inode, size, mtime, ctime)
are exactly those recorded when it was hashed, long enough (RACY_NS) after its last write.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from photocheck.db import open_database
from photocheck.db.models import FileStat
from photocheck.filestat import RACY_NS, TRUSTED
from photocheck.images import file_sha256
from photocheck.results import Verdict
from photocheck.scan import scan

pytestmark = pytest.mark.skipif(not TRUSTED, reason="no inode change time here: every file is always hashed")


def _setup(cli, demo_copy: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    return demo_copy / "sample_images"


def _age() -> None:
    """Let the files just written get older than the racy window."""
    time.sleep(RACY_NS / 1e9 + 0.3)


def _verdicts(outcome) -> dict[str, Verdict]:
    return {Path(p.path).name: p.verdict for p in outcome.summary.photos}


@pytest.mark.backends("sqlite", "postgresql")
def test_in_place_change_with_same_size_and_mtime_is_rescreened(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    samples = _setup(cli, demo_copy)
    listed = (samples / "biden1.jpg").read_bytes()  # a listed student: blocked
    other = (samples / "obama1.jpg").read_bytes()   # nobody listed: clear
    assert len(other) < len(listed)
    folder = tmp_path / "event"
    folder.mkdir()
    photo = folder / "a.jpg"
    photo.write_bytes(other + b"\0" * (len(listed) - len(other)))  # padded after the JPEG's end: same size
    _age()
    db = open_database(db_url)
    first = scan(db, [folder], owner="t", jobs=1)
    assert _verdicts(first) == {"a.jpg": Verdict.CLEAR}
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(FileStat)) == 1  # recorded by the check after screening

    again = scan(db, [folder], owner="t", jobs=1)
    assert (again.hashes_reused, again.hashes_read, again.cached) == (1, 0, 1)  # not read for its hash

    st = photo.stat()
    with open(photo, "r+b") as fh:  # same size, same inode, then the old mtime put back
        fh.write(listed)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = photo.stat()
    assert (now.st_size, now.st_ino, now.st_mtime_ns) == (st.st_size, st.st_ino, st.st_mtime_ns)
    assert now.st_ctime_ns != st.st_ctime_ns  # the kernel moved the change time
    changed = scan(db, [folder], owner="t", jobs=1)
    assert changed.hashes_reused == 0 and changed.screened == 1
    assert _verdicts(changed) == {"a.jpg": Verdict.BLOCKED}
    assert changed.summary.photos[0].sha256 == file_sha256(photo)


def test_files_written_within_the_racy_window_are_hashed_again(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    from photocheck.filestat import FileHashes

    samples = _setup(cli, demo_copy)
    db = open_database(db_url)
    photo = tmp_path / "a.jpg"
    photo.write_bytes((samples / "obama1.jpg").read_bytes())
    hashes = FileHashes(db, [photo])
    assert hashes.sha256(photo) == file_sha256(photo)  # hashed right after its write: not recorded
    hashes.save()
    again = FileHashes(db, [photo])
    assert again.recorded(photo) is None and again.sha256(photo) == file_sha256(photo) and again.read == 1

    _age()
    settled = FileHashes(db, [photo])
    settled.sha256(photo)
    settled.save()
    assert FileHashes(db, [photo]).recorded(photo) == file_sha256(photo)  # now old enough: trusted
    photo.write_bytes((samples / "biden1.jpg").read_bytes())  # changed, then hashed within the window
    changed = FileHashes(db, [photo])
    assert changed.recorded(photo) is None and changed.sha256(photo) == file_sha256(photo)
    changed.save()
    assert FileHashes(db, [photo]).recorded(photo) is None  # its new stat is not trusted either
    out = scan(db, [photo], owner="t", jobs=1)
    assert out.hashes_reused == 0 and _verdicts(out) == {"a.jpg": Verdict.BLOCKED}


def test_rehash_reads_every_file(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    samples = _setup(cli, demo_copy)
    folder = tmp_path / "event"
    shutil.copytree(samples, folder)
    n = len(list(folder.glob("*.jpg")))
    _age()
    db = open_database(db_url)
    scan(db, [folder], owner="t", jobs=1)
    assert scan(db, [folder], owner="t", jobs=1).hashes_reused == n
    forced = scan(db, [folder], owner="t", jobs=1, rehash=True)
    assert (forced.hashes_read, forced.hashes_reused, forced.cached) == (n, 0, n)
    cli("scan", folder, "--rehash", expect=1)  # the CLI option (biden1 is blocked)


def test_moved_renamed_and_copied_files_keep_their_own_verdicts(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    samples = _setup(cli, demo_copy)
    folder = tmp_path / "event"
    folder.mkdir()
    shutil.copy(samples / "biden1.jpg", folder / "x.jpg")   # blocked
    shutil.copy(samples / "obama1.jpg", folder / "y.jpg")   # clear
    shutil.copy(samples / "obama3.jpg", folder / "z.jpg")   # clear
    _age()
    db = open_database(db_url)
    first = _verdicts(scan(db, [folder], owner="t", jobs=1))
    assert first == {"x.jpg": Verdict.BLOCKED, "y.jpg": Verdict.CLEAR, "z.jpg": Verdict.CLEAR}

    os.replace(folder / "x.jpg", folder / "y.jpg")      # the blocked photo moved over a clear one's path
    os.rename(folder / "z.jpg", folder / "w.jpg")       # renamed
    shutil.copy2(folder / "y.jpg", folder / "v.jpg")    # copied, times kept
    out = scan(db, [folder], owner="t", jobs=1)
    assert _verdicts(out) == {"y.jpg": Verdict.BLOCKED, "w.jpg": Verdict.CLEAR, "v.jpg": Verdict.BLOCKED}
    assert out.hashes_reused == 0  # none of the three paths holds the file recorded for it
    assert all(p.sha256 == file_sha256(p.path) for p in out.summary.photos)


def _modules_after_unchanged_rescan(cli, demo_copy: Path, db_url: str, tmp_path: Path) -> set[str]:
    """The modules a `photocheck scan` process has loaded once it has rescanned an unchanged folder."""
    samples = _setup(cli, demo_copy)
    folder = tmp_path / "event"
    shutil.copytree(samples, folder)
    _age()
    cli("scan", folder, expect=1)
    probe = ("import sys\nfrom photocheck.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('MODULES', *sorted(sys.modules), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", probe, "scan", str(folder)], env={**os.environ, "PHOTOCHECK_DB": db_url},
                       capture_output=True, text=True, timeout=120)
    assert "4 photo(s) reused stored results" in " ".join(p.stderr.split()), p.stderr
    return set(p.stderr.rsplit("MODULES", 1)[1].split())


def test_unchanged_rescan_loads_no_model_runtime_and_decrypts_nothing(cli, demo_copy: Path, db_url: str,
                                                                      tmp_path: Path):
    """A functional guard (not a timing): every result comes from the cache, so neither the face
    models' runtimes, nor the encodings' decryption, nor the migrations are loaded."""
    loaded = _modules_after_unchanged_rescan(cli, demo_copy, db_url, tmp_path)
    unwanted = {m for m in loaded if m.split(".")[0] in ("onnxruntime", "dlib", "cryptography", "alembic")}
    assert not unwanted | (loaded & {"photocheck.students"}), sorted(unwanted)


def test_unchanged_rescan_does_not_import_numpy_pydantic_or_other_commands(cli, demo_copy: Path, db_url: str,
                                                                           tmp_path: Path):
    """Nor does typer build the other commands or load pydantic for arguments (photocheck/cli/lazy.py)."""
    loaded = _modules_after_unchanged_rescan(cli, demo_copy, db_url, tmp_path)
    ours = " ".join(sorted(m for m in loaded if m.startswith("photocheck")))
    assert not {m for m in loaded if m.split(".")[0] in ("numpy", "pydantic", "pydantic_core")}, ours
    assert not loaded & {"photocheck.engine", "photocheck.pipeline", "photocheck.worker", "photocheck.images"}
    assert {m for m in loaded if m.startswith("photocheck.cli.") and m.endswith("_cmd")} == {"photocheck.cli.scan_cmd"}


def test_stored_scan_keys_are_used_only_while_the_model_files_are_unchanged(cli, demo_copy: Path, db_url: str,
                                                                           tmp_path: Path):
    import json

    from photocheck.db.models import ScanKey
    from photocheck.scan import _recall_keys

    samples = _setup(cli, demo_copy)
    db = open_database(db_url)
    first = scan(db, [samples], owner="t", jobs=1)
    with db.session() as s:
        row = s.scalars(select(ScanKey)).one()
        inputs_key, files = row.inputs_key, json.loads(row.model_files)
    keys = _recall_keys(db, inputs_key)
    assert keys is not None and keys.model == first.summary.model and keys.unprotected == []
    assert len(files) == 3 and all(Path(f[0]).is_file() for f in files)
    files[0][4] += 1  # a model file's mtime other than recorded: as if it were replaced
    with db.session() as s:
        s.get(ScanKey, inputs_key).model_files = json.dumps(files)
    assert _recall_keys(db, inputs_key) is None
    second = scan(db, [samples], owner="t", jobs=1)  # computes the keys again: the same, so all cached
    assert second.cached == len(second.summary.photos) == len(first.summary.photos)


def test_a_cached_rescan_stores_its_photos_and_their_audit_events_in_one_batch_the_chain_intact(
        cli, demo_copy: Path, db_url: str):
    import json

    from photocheck import audit
    from photocheck.db.models import AuditEvent, Photo

    samples = _setup(cli, demo_copy)
    db = open_database(db_url)
    scan(db, [samples], owner="t", jobs=1)
    second = scan(db, [samples], owner="t", jobs=1)
    assert second.cached == len(second.summary.photos) >= 2
    scan_id = second.summary.scan_id
    with db.session() as s:
        photos = {p.id: p for p in s.scalars(select(Photo).where(Photo.scan_id == scan_id))}
        events = [e for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))
                  if e.action == "scan.photo" and json.loads(e.details)["scan_id"] == scan_id]
    assert sorted(json.loads(e.details)["photo_id"] for e in events) == sorted(photos)
    assert all(photos[json.loads(e.details)["photo_id"]].sha256 == e.photo_sha256 for e in events)
    assert {p.photo_id for p in second.summary.photos} == set(photos)
    assert audit.verify(db).ok
