"""Data protection on the real engine and real SQLite files: encodings encrypted at rest with a key
outside the database, key rotation, forgetting with no byte left in the file or its WAL,
retention purge, bystanders never written, backup and restore, and the 0004 migration."""
from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text

from photocheck import protect
from photocheck.db import open_database
from photocheck.db.models import ProtectionEvent, ReferenceEncoding, ReferencePhoto
from tests.helpers import REPO, Cli, load_report

BIDEN = REPO / "sample_images" / "biden1.jpg"      # the listed student D0001 at an event
OBAMA = REPO / "sample_images" / "obama1.jpg"      # a bystander
TOGETHER = REPO / "sample_images" / "together_sideways.jpg"  # the listed student and a bystander


def raw_bytes(db_path: Path) -> bytes:
    """Everything SQLite keeps on disk for this database: the file, its WAL and shared memory."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db_path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


def stored_encodings(db_path: Path) -> list[tuple[bytes, str]]:
    with sqlite3.connect(db_path) as c:
        rows = c.execute("SELECT vector, key_id FROM reference_encodings").fetchall()
    c.close()
    return rows


@pytest.fixture(scope="module")
def engine():
    from photocheck.engine import FaceEngine

    return FaceEngine()


def face_encodings(engine, path: Path) -> list[np.ndarray]:
    from photocheck.images import load_image

    img = load_image(path)
    return engine.encode(img.rgb, engine.detect(img.rgb))


@pytest.fixture(scope="module")
def enrolled_template(tmp_path_factory, engine):
    """The demo roster imported and D0001 enrolled, once; tests get a copy (see `enrolled`)."""
    root = tmp_path_factory.mktemp("enrolled")
    key_file = root / "photocheck.key"
    old = os.environ.get("PHOTOCHECK_KEY_FILE")
    os.environ["PHOTOCHECK_KEY_FILE"] = str(key_file)
    try:
        from photocheck.enroll import enroll
        from photocheck.students import import_roster

        db = open_database(f"sqlite:///{root / 'photocheck.db'}")
        import_roster(db, REPO / "roster" / "no_consent.csv", user="tester")
        report = enroll(db, REPO / "roster" / "photos", engine=engine)
        assert report.accepted == 1 and report.key_created == key_file
        protect.scrub(db)
        db.dispose()
    finally:
        os.environ.pop("PHOTOCHECK_KEY_FILE")
        if old is not None:
            os.environ["PHOTOCHECK_KEY_FILE"] = old
    return root


@pytest.fixture
def enrolled(enrolled_template: Path, tmp_path: Path, monkeypatch) -> tuple[Cli, Path, Path]:
    """(cli, database file, key file): a private copy of the enrolled demo database and its key."""
    d = tmp_path / "data"
    d.mkdir()
    db_path, key_file = d / "photocheck.db", tmp_path / "keys" / "photocheck.key"
    shutil.copy(enrolled_template / "photocheck.db", db_path)
    key_file.parent.mkdir(mode=0o700)
    shutil.copy(enrolled_template / "photocheck.key", key_file)
    os.chmod(key_file, 0o600)
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(key_file))
    return Cli(f"sqlite:///{db_path}"), db_path, key_file


def references_ok(db_path: Path) -> bool:
    """The listed student's encoding decrypts with the configured key (what a scan needs first)."""
    from photocheck.model_files import model_info
    from photocheck.students import load_references

    db = open_database(f"sqlite:///{db_path}")
    try:
        m = model_info()["encoder"]
        refs = load_references(db, m["name"], m["version"])
        return refs.student_ids == ["D0001"] and not refs.unprotected
    finally:
        db.dispose()


def verdicts(cli: Cli, tmp_path: Path, *paths: Path, expect: int | None = None) -> dict[str, str]:
    report = tmp_path / f"r{len(list(tmp_path.glob('r*.json')))}.json"
    cli("scan", *paths, "--jobs", "1", "--json", report, expect=expect)
    return {Path(im["path"]).name: im["verdict"] for im in load_report(report)["images"]}


# --- encryption at rest ---------------------------------------------------------------------


def test_encodings_are_encrypted_and_the_key_lives_outside_the_database(enrolled_template: Path, engine):
    db_path, key_file = enrolled_template / "photocheck.db", enrolled_template / "photocheck.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = protect._read_key_file(key_file)
    (reference,) = face_encodings(engine, REPO / "roster" / "photos" / "D0001" / "biden2.jpg")
    ((blob, key_id),) = stored_encodings(db_path)
    assert key_id == key.key_id
    assert len(blob) == 12 + 128 * 8 + 16  # nonce + AES-GCM ciphertext + tag
    data = raw_bytes(db_path)
    plain = np.asarray(reference, dtype="<f8").tobytes()
    # A copy of the database without its key reveals no encoding: neither the vector, nor any
    # 16-byte piece of it, nor the key.
    for i in range(0, len(plain), 16):
        assert plain[i:i + 16] not in data
    assert np.asarray(reference, dtype="<f4").tobytes()[:16] not in data
    assert key.secret not in data and key.encoded().encode() not in data
    # With the key, the stored ciphertext decrypts to exactly the reference encoding.
    db = open_database(f"sqlite:///{db_path}")
    with db.session() as s:
        enc = s.scalars(select(ReferenceEncoding)).one()
        assert np.allclose(protect.decrypt_row(key, enc), reference)
        # bound to its row: the same ciphertext under another student's row does not decrypt
        enc.student_pk += 1
        with pytest.raises(protect.ProtectionError, match="integrity"):
            protect.decrypt_row(key, enc)
        s.rollback()
    db.dispose()


def test_first_enroll_creates_the_key_file_and_says_so(cli, demo_copy: Path, _photocheck_home: Path, tmp_path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    out = cli("enroll", demo_copy / "roster" / "photos").output
    key_file = _photocheck_home / "photocheck.key"
    assert "Created the encryption key" in out and str(key_file) in out.replace("\n", "")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "Created the encryption key" not in cli("enroll", demo_copy / "roster" / "photos").output
    assert verdicts(cli, tmp_path, BIDEN, expect=1) == {"biden1.jpg": "blocked"}
    assert "id " in cli("keys", "status").output


def test_without_the_right_key_scan_and_enroll_are_configuration_errors(enrolled, tmp_path: Path, monkeypatch):
    cli, db_path, key_file = enrolled
    hidden = key_file.with_name("elsewhere")
    key_file.rename(hidden)
    result = cli("scan", BIDEN, "--jobs", "1", expect=2)
    assert "no key was found" in result.output and "encrypted with key" in result.output
    with sqlite3.connect(db_path) as c:
        assert c.execute("SELECT count(*) FROM scans").fetchone() == (0,)  # no scan recorded, nothing "clear"
    c.close()
    # enroll must not create a fresh key that would orphan the stored encodings
    assert "no key was found" in cli("enroll", REPO / "roster" / "photos", expect=2).output
    assert not key_file.exists()
    cli("keys", "status", expect=2)
    # a different key (in the environment) is refused just as clearly
    monkeypatch.setenv("PHOTOCHECK_KEY", protect.Key(os.urandom(32), "", None).encoded())
    assert "$PHOTOCHECK_KEY holds key" in cli("scan", BIDEN, "--jobs", "1", expect=2).output
    # the same key in the environment works
    monkeypatch.setenv("PHOTOCHECK_KEY", hidden.read_text().strip())
    assert references_ok(db_path)
    monkeypatch.delenv("PHOTOCHECK_KEY")
    hidden.rename(key_file)
    os.chmod(key_file, 0o644)
    assert "chmod 600" in cli("scan", BIDEN, "--jobs", "1", expect=2).output


def test_keys_rotate_reencrypts_and_the_old_key_stops_working(enrolled, tmp_path: Path, monkeypatch):
    cli, db_path, key_file = enrolled
    old_copy = tmp_path / "old.key"
    shutil.copy(key_file, old_copy)
    os.chmod(old_copy, 0o600)
    ((old_blob, old_id),) = stored_encodings(db_path)
    out = cli("keys", "rotate").output
    assert f"Key {old_id} replaced by" in out and "1 encoding(s) re-encrypted" in out
    ((new_blob, new_id),) = stored_encodings(db_path)
    assert new_id != old_id and new_blob != old_blob
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not Path(str(key_file) + ".new").exists()
    assert old_blob[12:44] not in raw_bytes(db_path)  # the old ciphertext is gone from file and WAL
    assert references_ok(db_path)
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(old_copy))
    assert "encrypted with key" in cli("scan", BIDEN, "--jobs", "1", expect=2).output
    monkeypatch.setenv("PHOTOCHECK_KEY", old_copy.read_text())
    assert "PHOTOCHECK_KEY_FILE" in cli("keys", "rotate", expect=2).output  # env keys are not rotated in place


def test_rotation_interrupted_after_commit_is_finished_on_next_open(enrolled, tmp_path: Path):
    """A crash between the re-encryption commit and the key-file swap loses nothing."""
    cli, db_path, key_file = enrolled
    db = open_database(f"sqlite:///{db_path}")
    old = protect.resolve_key(db)
    pending = Path(str(key_file) + ".new")
    new_secret = os.urandom(32)
    protect._write_key_file(pending, new_secret)
    new = protect.Key(new_secret, "", pending)
    with db.session() as s:  # what rotate_key commits before it swaps the files
        protect.reencrypt(s, old, new)
    db.dispose()
    assert references_ok(db_path)
    assert not pending.exists() and protect._read_key_file(key_file).key_id == new.key_id
    # ...and a crash before the commit leaves the old key in force; the stale .new is ignored
    protect._write_key_file(pending, os.urandom(32))
    assert references_ok(db_path)
    cli("keys", "rotate")
    assert references_ok(db_path)


# --- forgetting -------------------------------------------------------------------------------


def _assert_forgotten(db_path: Path, blob: bytes) -> None:
    data = raw_bytes(db_path)
    for i in range(0, len(blob) - 16, 16):  # not one 16-byte piece of the ciphertext is left anywhere
        assert blob[i:i + 16] not in data, f"bytes {i}..{i + 16} of the encoding are still on disk"
    assert b"biden2.jpg" not in data  # nor the reference photo's record
    wal = Path(str(db_path) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_forget_leaves_no_byte_of_the_encoding_in_the_file_or_wal(enrolled, tmp_path: Path):
    cli, db_path, _ = enrolled
    ((blob, _),) = stored_encodings(db_path)
    assert blob[12:44] in raw_bytes(db_path)  # the search works: the ciphertext is there before
    out = cli("forget", "D0001").output
    assert "deleted 1 encoding(s) and 1 reference photo record(s)" in out and "UNPROTECTED" in out
    _assert_forgotten(db_path, blob)
    db = open_database(f"sqlite:///{db_path}")
    with db.session() as s:
        assert s.scalars(select(ReferencePhoto)).all() == []
        (event,) = s.scalars(select(ProtectionEvent).where(ProtectionEvent.action == "forget")).all()
        assert "D0001" in event.detail and "1 encoding" in event.detail
    db.dispose()
    # still on the no-consent list, now unprotected: the listed student's photo is never "clear"
    assert verdicts(cli, tmp_path, BIDEN, expect=1) == {"biden1.jpg": "review"}
    assert "not on the no-consent list" in cli("forget", "NOBODY").output


def test_consent_granted_on_reimport_leaves_no_byte_either(enrolled, tmp_path: Path):
    cli, db_path, _ = enrolled
    ((blob, _),) = stored_encodings(db_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("student_id,first_name,last_name,campus,grade,opt_out\n")
    assert "removed: D0001" in cli("roster", "import", empty).output
    _assert_forgotten(db_path, blob)


# --- reference thumbnails (the web review's evidence) ------------------------------------------


def stored_thumbnails(db_path: Path) -> list[tuple[bytes, str]]:
    with sqlite3.connect(db_path) as c:
        rows = c.execute("SELECT jpeg, key_id FROM reference_thumbnails").fetchall()
    c.close()
    return rows


def thumbnail_of(db_path: Path, student_id: str = "D0001") -> bytes | None:
    from photocheck.students import reference_thumbnail

    db = open_database(f"sqlite:///{db_path}")
    try:
        return reference_thumbnail(db, student_id)
    finally:
        db.dispose()


def test_enrolment_keeps_an_encrypted_face_thumbnail_that_rotation_reencrypts(enrolled, engine):
    import io

    from PIL import Image

    cli, db_path, _ = enrolled
    ((blob, key_id),) = stored_thumbnails(db_path)
    ((_, enc_key_id),) = stored_encodings(db_path)
    assert key_id == enc_key_id and b"JFIF" not in blob  # ciphertext under the encodings' key, not a JPEG
    jpeg = thumbnail_of(db_path)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert max(im.size) == 128
        rgb = np.asarray(im.convert("RGB"))
    assert len(engine.detect(rgb)) == 1  # the student's face, not the whole portrait
    cli("keys", "rotate")
    ((new_blob, new_id),) = stored_thumbnails(db_path)
    assert new_id != key_id and new_blob != blob and blob[12:44] not in raw_bytes(db_path)
    assert thumbnail_of(db_path) == jpeg
    with sqlite3.connect(db_path) as c:  # a ciphertext moved to another row does not decrypt
        c.execute("UPDATE reference_thumbnails SET reference_photo_id = reference_photo_id + 100")
    c.close()
    with pytest.raises(protect.ProtectionError, match="integrity check"):
        thumbnail_of(db_path)


@pytest.mark.parametrize("how", ["forget", "purge", "roster re-import"])
def test_the_reference_thumbnail_is_gone_after_forget_purge_and_reimport(enrolled, tmp_path: Path, how: str):
    cli, db_path, _ = enrolled
    ((blob, _),) = stored_thumbnails(db_path)
    assert blob[12:44] in raw_bytes(db_path)
    if how == "forget":
        cli("forget", "D0001")
    elif how == "purge":
        with sqlite3.connect(db_path) as c:
            c.execute("UPDATE reference_photos SET created_at = datetime('now', '-400 days')")
        c.close()
        cli("purge")
    else:
        empty = tmp_path / "empty.csv"
        empty.write_text("student_id,first_name,last_name,campus,grade,opt_out\n")
        cli("roster", "import", empty)
    assert stored_thumbnails(db_path) == []
    _assert_forgotten(db_path, blob)
    if how != "roster re-import":
        assert thumbnail_of(db_path) is None


# --- retention ------------------------------------------------------------------------------


@pytest.mark.parametrize("text_, days", [("90d", 90), ("12w", 84), ("6mo", 180), ("1y", 365), (" 2Y ", 730)])
def test_parse_duration(text_, days):
    assert protect.parse_duration(text_).days == days


def test_purge_deletes_what_is_past_retention_only(enrolled, tmp_path: Path, monkeypatch):
    cli, db_path, _ = enrolled
    cli("scan", BIDEN, "--jobs", "1", expect=1)
    cli("scan", OBAMA, "--jobs", "1", expect=0)
    ((blob, _),) = stored_encodings(db_path)
    with sqlite3.connect(db_path) as c:  # the first scan and the enrolment happened 400 days ago
        c.execute("UPDATE scans SET started_at = datetime('now', '-400 days') WHERE id = 1")
        c.execute("UPDATE reference_photos SET created_at = datetime('now', '-400 days')")
    c.close()
    assert "Would delete" in cli("purge", "--dry-run").output
    assert len(stored_encodings(db_path)) == 1
    out = cli("purge").output  # default retention: 365 days
    assert "1 scan(s) with 1 photo result(s)" in out and "1 encoding(s) and 1 reference photo record(s)" in out
    with sqlite3.connect(db_path) as c:
        assert c.execute("SELECT id FROM scans").fetchall() == [(2,)]
        assert c.execute("SELECT path FROM photos").fetchall() == [(str(OBAMA),)]
    c.close()
    _assert_forgotten(db_path, blob)
    assert "0 scan(s)" in cli("purge", "--older-than", "400d").output
    monkeypatch.setenv("PHOTOCHECK_RETENTION", "0h")
    assert "1 scan(s)" in cli("purge", "--dry-run").output
    assert "not a duration" in cli("purge", "--older-than", "soon", expect=2).output


# --- bystanders -------------------------------------------------------------------------------


def test_no_encoding_of_any_face_in_event_photos_is_written_anywhere(enrolled, tmp_path: Path, engine):
    cli, db_path, _ = enrolled
    json_out, csv_out, html_out = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.html"
    cli("scan", BIDEN, OBAMA, TOGETHER, "--jobs", "1", "--json", json_out, "--csv", csv_out, "--html", html_out,
        expect=1)
    encodings = [e for p in (BIDEN, OBAMA, TOGETHER) for e in face_encodings(engine, p)]
    assert len(encodings) >= 3
    written = raw_bytes(db_path) + json_out.read_bytes() + csv_out.read_bytes() + html_out.read_bytes()
    for enc in encodings:
        for dtype in ("<f8", "<f4", ">f8"):
            assert np.asarray(enc, dtype=dtype).tobytes()[:16] not in written
        # nor printed as text (reports are JSON/CSV/HTML)
        assert f"{enc[0]:.6f}" not in written.decode("latin-1") or f"{enc[1]:.6f}" not in written.decode("latin-1")


# --- backup and restore -----------------------------------------------------------------------


def test_backup_and_documented_restore(enrolled, tmp_path: Path, monkeypatch):
    cli, db_path, key_file = enrolled
    backup = tmp_path / "backup.db"
    out = cli("backup", backup).output
    assert "key is not in it" in out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with sqlite3.connect(backup) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    c.close()
    assert "already exists" in cli("backup", backup, expect=2).output
    # Restore as README.md says: copy the backup into place (no -wal/-shm beside it), same key.
    restored = tmp_path / "restored" / "photocheck.db"
    restored.parent.mkdir()
    shutil.copy(backup, restored)
    rcli = Cli(f"sqlite:///{restored}")
    assert verdicts(rcli, tmp_path, BIDEN, OBAMA, expect=1) == {"biden1.jpg": "blocked", "obama1.jpg": "clear"}
    # a backup is useless without its key
    monkeypatch.setenv("PHOTOCHECK_KEY_FILE", str(tmp_path / "missing.key"))
    rcli("scan", BIDEN, "--jobs", "1", expect=2)


# --- migration ------------------------------------------------------------------------------


def test_migration_0004_deletes_plaintext_encodings_and_asks_to_reenroll(tmp_path: Path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from photocheck.db.session import MIGRATIONS_DIR, _sqlite_pragmas

    db_path = tmp_path / "old.db"
    eng = create_engine(f"sqlite:///{db_path}")
    from sqlalchemy import event

    event.listen(eng, "connect", _sqlite_pragmas)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with eng.begin() as conn:  # a database made by photocheck before encryption
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    plain = np.random.default_rng(1).normal(size=128).astype("<f8").tobytes()
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO students (id, student_id, first_name, last_name, campus, grade, opt_out, "
                          "strict, updated_at) VALUES (1, 'S1', 'A', 'B', 'C', '9', 'all', 0, '2026-01-01')"))
        conn.execute(text("INSERT INTO reference_photos (id, student_pk, path, sha256, accepted, reason, created_at) "
                          "VALUES (1, 1, 'ref.jpg', 'x', 1, 'accepted', '2026-01-01')"))
        conn.execute(text("INSERT INTO reference_encodings (reference_photo_id, student_pk, model_name, "
                          "model_version, vector, created_at) VALUES (1, 1, 'm', 'v', :v, '2026-01-01')"), {"v": plain})
    eng.dispose()
    db = open_database(f"sqlite:///{db_path}")
    with db.session() as s:
        assert s.scalars(select(ReferenceEncoding)).all() == []
        ref = s.scalars(select(ReferencePhoto)).one()
        assert not ref.accepted and "enroll" in ref.reason
        assert "1 unencrypted" in s.scalars(select(ProtectionEvent)).one().detail
    db.dispose()
    data = raw_bytes(db_path)
    for i in range(0, len(plain), 16):
        assert plain[i:i + 16] not in data
    listing = Cli(f"sqlite:///{db_path}")("roster", "list").output
    assert "UNPROTECTED" in listing


@pytest.mark.parametrize("args", [["keys"], ["keys", "rotate"], ["keys", "status"], ["forget"], ["purge"],
                                  ["backup"]])
def test_help_teaches(cli, args):
    out = cli(*args, "--help").output
    assert "Usage" in out
    if args == ["forget"]:
        assert "UNPROTECTED" in out
    if args == ["backup"]:
        assert "key is NOT in it" in out.replace("\n", " ") or "NOT" in out


def test_the_suite_runs_with_network_sockets_disabled():
    """pyproject.toml passes --disable-socket: any network call made by photocheck fails its test."""
    import socket

    from pytest_socket import SocketBlockedError

    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
