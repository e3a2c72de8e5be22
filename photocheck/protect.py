"""Protecting listed students' biometric data: the encryption key, forgetting, retention, backups.

Reference encodings are encrypted with AES-256-GCM (`cryptography`) before they reach the
database. Each ciphertext is bound to its row (student, reference photo, model) as associated
data, so it cannot be moved to another student unnoticed. The key never enters the database:
it lives in a 0600 file in the data directory (`$PHOTOCHECK_KEY_FILE` to move it) or in
`$PHOTOCHECK_KEY`. Each row records the key's fingerprint (`key_id`), so a database opened with
the wrong key or none fails with a clear message instead of looking "not enrolled".

Deleting is complete: every connection runs with SQLite `secure_delete` (deleted rows are
zeroed in place) and after a deletion the WAL is checkpointed and truncated (`scrub`), so no
byte of a forgotten encoding is left in the database file or its WAL.

On PostgreSQL, `scrub` rewrites the reference tables (VACUUM FULL: new files holding only the
remaining rows; the old files are deleted), so a forgotten encoding is no longer reachable through
the database. What PostgreSQL keeps outside its tables — WAL segments not yet recycled, WAL
archives, base backups, pg_dump files — is the server administrator's: the rows there are still
AES-GCM ciphertext, useless without the key file (docs/administration.md, "SQLite or PostgreSQL").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url

from photocheck import config, datadir
from photocheck.db import Database
from photocheck.db.models import (
    Face,
    FileStat,
    Photo,
    ProtectionEvent,
    ReferenceEncoding,
    ReferencePhoto,
    ReferenceThumbnail,
    Scan,
    ScanKey,
    Student,
    utcnow,
)

if TYPE_CHECKING:
    import numpy as np

KEY_BYTES = 32
NONCE_BYTES = 12


class ProtectionError(Exception):
    """A key, deletion or backup problem the user must fix (a configuration error, exit 2)."""


class KeyUnavailable(ProtectionError):
    """Encodings exist but the key that decrypts them is not available."""


# --- the key --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    secret: bytes
    source: str            # human description: "key file /x/photocheck.key" or "$PHOTOCHECK_KEY"
    path: Path | None      # the key file, None when the key comes from the environment

    @property
    def key_id(self) -> str:
        """A fingerprint stored beside each ciphertext: tells which key is needed, reveals nothing."""
        return hmac.new(self.secret, b"photocheck key id v1", hashlib.sha256).hexdigest()[:16]

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.secret).decode()


def _parse_key(text: str, source: str) -> bytes:
    try:
        secret = base64.urlsafe_b64decode(text.strip().encode())
    except (ValueError, TypeError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise ProtectionError(f"{source} is not a photocheck key (expected {KEY_BYTES} bytes in base64)")
    return secret


def _read_key_file(path: Path) -> Key | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ProtectionError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    # POSIX mode bits; on Windows access is set by ACLs and st_mode always reads as shared.
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ProtectionError(f"key file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                              f"run `chmod 600 {path}`")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProtectionError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    return Key(_parse_key(text, f"key file {path}"), f"key file {path}", path)


def _pending_path(path: Path) -> Path:
    return path.with_name(path.name + ".new")


def load_key() -> Key | None:
    """The configured key ($PHOTOCHECK_KEY, else the key file), or None if there is none yet."""
    if os.environ.get(config.KEY_ENV):
        return Key(_parse_key(os.environ[config.KEY_ENV], f"${config.KEY_ENV}"), f"${config.KEY_ENV}", None)
    return _read_key_file(config.key_file())


def _write_key_file(path: Path, secret: bytes) -> None:
    """Create `path` with mode 0600 (its folder 0700 if new), durably; it must not exist."""
    if datadir.in_data_dir(path.parent):
        datadir.make_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, base64.urlsafe_b64encode(secret) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_key() -> Key:
    path = config.key_file()
    try:
        _write_key_file(path, os.urandom(KEY_BYTES))
    except FileExistsError:
        pass  # another process made it first: use theirs
    except OSError as exc:
        raise ProtectionError(f"cannot create key file {path}: {exc.strerror or exc}") from None
    key = _read_key_file(path)
    assert key is not None
    return key


def _stored_key_ids(db: Database) -> set[str]:
    with db.session() as s:
        return (set(s.scalars(select(ReferenceEncoding.key_id).distinct()))
                | set(s.scalars(select(ReferenceThumbnail.key_id).distinct())))


def resolve_key(db: Database) -> Key | None:
    """The key that decrypts this database's encodings; None only if there are no encodings and no key.

    Raises KeyUnavailable when encodings exist and the configured key is missing or another one.
    Finishes a key rotation interrupted after the database was re-encrypted (see rotate_key).
    """
    ids = _stored_key_ids(db)
    key = load_key()
    if not ids or (key is not None and ids == {key.key_id}):
        return key
    if key is None or key.path is not None:
        pending = _read_key_file(_pending_path(key.path if key else config.key_file()))
        if pending is not None and ids == {pending.key_id}:
            final = key.path if key else config.key_file()
            os.replace(pending.path, final)
            _fsync_dir(final.parent)
            return Key(pending.secret, f"key file {final}", final)
    where = f"{key.source} holds key {key.key_id}" if key else (
        f"no key was found (neither ${config.KEY_ENV} nor the key file {config.key_file()})")
    raise KeyUnavailable(
        f"the database holds reference encodings encrypted with key {', '.join(sorted(ids))}, but {where}. "
        f"Without the right key no listed student can be recognised, so nothing can be screened. Restore the "
        f"key file (or set ${config.KEY_FILE_ENV} / ${config.KEY_ENV}); if the key is lost, run "
        f"`photocheck forget` for each student and enroll them again.")


def key_for_enroll(db: Database) -> tuple[Key, bool]:
    """The key to encrypt new encodings with, creating it if there is none; (key, created)."""
    key = resolve_key(db)
    if key is not None:
        return key, False
    return create_key(), True


# --- encryption -----------------------------------------------------------------------------


def encoding_aad(student_pk: int, reference_photo_id: int, model_name: str, model_version: str) -> bytes:
    """Associated data binding a ciphertext to its row: moved or swapped ciphertexts fail to decrypt."""
    return f"photocheck-encoding-v1|{student_pk}|{reference_photo_id}|{model_name}|{model_version}".encode()


def _aead(key: Key):
    # cryptography (and numpy below) load only when something is encrypted or decrypted: a scan
    # that takes every result from the cache checks the key but never decrypts an encoding.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key.secret)


def _open(key: Key, blob: bytes, aad: bytes, what: str) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return _aead(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise ProtectionError(what) from None


def encrypt_vector(key: Key, vector: np.ndarray, aad: bytes) -> bytes:
    import numpy as np

    nonce = os.urandom(NONCE_BYTES)
    plain = np.ascontiguousarray(vector, dtype="<f8").tobytes()
    return nonce + _aead(key).encrypt(nonce, plain, aad)


def decrypt_vector(key: Key, blob: bytes, aad: bytes) -> np.ndarray:
    import numpy as np

    plain = _open(key, blob, aad, "a reference encoding failed its integrity check: the database was altered or "
                  "copied between rows; run `photocheck forget` for that student and enroll again")
    return np.frombuffer(plain, dtype="<f8")


def thumbnail_aad(student_pk: int, reference_photo_id: int) -> bytes:
    """Associated data binding a reference thumbnail's ciphertext to its row."""
    return f"photocheck-thumbnail-v1|{student_pk}|{reference_photo_id}".encode()


def encrypt_bytes(key: Key, data: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + _aead(key).encrypt(nonce, data, aad)


def decrypt_thumbnail(key: Key, thumb: ReferenceThumbnail) -> bytes:
    """The JPEG of a reference thumbnail; ProtectionError if it fails its integrity check."""
    return _open(key, thumb.jpeg, thumbnail_aad(thumb.student_pk, thumb.reference_photo_id),
                 "a reference thumbnail failed its integrity check: the database was altered or copied between rows")


def _row_aad(enc: ReferenceEncoding) -> bytes:
    return encoding_aad(enc.student_pk, enc.reference_photo_id, enc.model_name, enc.model_version)


def decrypt_row(key: Key, enc: ReferenceEncoding) -> np.ndarray:
    return decrypt_vector(key, enc.vector, _row_aad(enc))


# --- scrubbing, events ----------------------------------------------------------------------


def _is_sqlite(db: Database) -> bool:
    return db.engine.dialect.name == "sqlite"


# The tables that hold (or held) listed students' biometric data and reference-photo records.
_SCRUBBED_TABLES = ("reference_encodings", "reference_thumbnails", "reference_photos")


def scrub(db: Database, attempts: int = 20) -> bool:
    """Move everything into the database file and truncate the WAL, so deleted bytes leave it too.

    With secure_delete on, deleted rows are zeroed in the pages the checkpoint writes back. True
    when the WAL was emptied; False when another process kept it busy (it is emptied later, at
    the next checkpoint that finds it idle).

    PostgreSQL: VACUUM FULL of the reference tables (see the module docstring). False when
    another client held them for 30 s (a scan loading encodings), or the role connected does not
    own them (VACUUM would only warn): the deleted rows then stay in the files until the next scrub.
    """
    if db.engine.dialect.name == "postgresql":
        return _scrub_postgresql(db)
    if not _is_sqlite(db):
        return True
    for i in range(attempts):
        with db.engine.connect() as conn:
            busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if not busy:
            return True
        time.sleep(min(0.05 * (i + 1), 0.5))
    return False


def _scrub_postgresql(db: Database) -> bool:
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        owned = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_class WHERE oid = ANY(%(t)s::regclass[]) "
            "AND pg_has_role(current_user, relowner, 'USAGE')", {"t": list(_SCRUBBED_TABLES)}).scalar()
        if owned != len(_SCRUBBED_TABLES):
            return False
        try:
            conn.exec_driver_sql("SET lock_timeout = '30s'")
            conn.exec_driver_sql(f"VACUUM FULL {', '.join(_SCRUBBED_TABLES)}")
        except Exception:  # lock timeout: a long transaction still reads the table
            return False
        finally:
            conn.exec_driver_sql("RESET lock_timeout")
    return True


def _event(s, actor: str, action: str, detail: str) -> None:
    s.add(ProtectionEvent(actor=actor, action=action, detail=detail))


# --- forget -----------------------------------------------------------------------------------


@dataclass
class ForgetResult:
    student_id: str
    listed: bool           # still on the no-consent list (now unprotected until enrolled again)
    encodings: int
    reference_photos: int
    scrubbed: bool


def forget(db: Database, student_id: str, *, actor: str) -> ForgetResult:
    """Delete every reference encoding, thumbnail and reference-photo record of one student, completely.

    The student stays on the no-consent list if listed (removing them would let their photos
    come out "clear"); they are UNPROTECTED until enrolled again. Only the fact is recorded.
    """
    with db.session() as s:
        st = s.scalar(select(Student).where(Student.student_id == student_id))
        if st is None:
            n_enc = n_ref = 0
        else:
            n_enc = s.execute(delete(ReferenceEncoding).where(ReferenceEncoding.student_pk == st.id)).rowcount
            s.execute(delete(ReferenceThumbnail).where(ReferenceThumbnail.student_pk == st.id))
            n_ref = s.execute(delete(ReferencePhoto).where(ReferencePhoto.student_pk == st.id)).rowcount
            s.execute(delete(ScanKey))  # derived from the roster (ids of unprotected students): recomputed
        _event(s, actor, "forget", f"student {student_id}: {n_enc} encoding(s), {n_ref} reference photo record(s) "
                                   "deleted")
    return ForgetResult(student_id, st is not None, n_enc, n_ref, scrub(db))


# --- retention ------------------------------------------------------------------------------

_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1),
          "mo": timedelta(days=30), "y": timedelta(days=365)}


def parse_duration(text: str) -> timedelta:
    """`36h`, `90d`, `12w`, `6mo`, `1y` (a month is 30 days, a year 365)."""
    m = re.fullmatch(r"\s*(\d+)\s*(h|d|w|mo|y)\s*", text.lower())
    if not m:
        raise ProtectionError(f"not a duration: {text!r} (use e.g. 90d, 12w, 6mo, 1y)")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class PurgeResult:
    cutoff: str
    scans: int
    photos: int
    faces: int
    encodings: int
    reference_photos: int
    scrubbed: bool


def purge(db: Database, older_than: timedelta, *, actor: str, dry_run: bool = False) -> PurgeResult:
    """Delete scan results and reference encodings/photos older than `older_than`."""
    cutoff = utcnow() - older_than
    with db.session() as s:
        old_scans = select(Scan.id).where(Scan.started_at < cutoff)
        old_photos = select(Photo.id).where(Photo.scan_id.in_(old_scans))
        n_scans = s.scalar(select(func.count()).select_from(old_scans.subquery()))
        n_photos = s.scalar(select(func.count()).select_from(old_photos.subquery()))
        n_faces = s.scalar(select(func.count()).select_from(Face).where(Face.photo_id.in_(old_photos)))
        old_refs = select(ReferencePhoto.id).where(ReferencePhoto.created_at < cutoff)
        n_refs = s.scalar(select(func.count()).select_from(old_refs.subquery()))
        n_enc = s.scalar(select(func.count()).select_from(ReferenceEncoding)
                         .where(ReferenceEncoding.reference_photo_id.in_(old_refs)))
        result = PurgeResult(cutoff.isoformat(timespec="seconds"), n_scans, n_photos, n_faces, n_enc, n_refs, True)
        if dry_run:
            return result
        s.execute(delete(Face).where(Face.photo_id.in_(old_photos)))
        s.execute(delete(Photo).where(Photo.scan_id.in_(old_scans)))
        s.execute(delete(Scan).where(Scan.started_at < cutoff))
        s.execute(delete(ReferenceEncoding).where(ReferenceEncoding.reference_photo_id.in_(old_refs)))
        s.execute(delete(ReferenceThumbnail).where(ReferenceThumbnail.reference_photo_id.in_(old_refs)))
        s.execute(delete(ReferencePhoto).where(ReferencePhoto.created_at < cutoff))
        s.execute(delete(ScanKey))  # derived caches, recomputed by the next scan
        s.execute(delete(FileStat).where(FileStat.hashed_at_ns < int(cutoff.timestamp() * 1e9)))
        _event(s, actor, "purge", f"older than {result.cutoff}: {n_scans} scan(s), {n_photos} photo result(s), "
                                  f"{n_enc} encoding(s), {n_refs} reference photo record(s) deleted")
    result.scrubbed = scrub(db)
    return result


# --- key rotation -----------------------------------------------------------------------------


@dataclass
class RotateResult:
    old_key_id: str | None
    new_key_id: str
    path: Path
    encodings: int


def reencrypt(s, old: Key, new: Key) -> int:
    """Re-encrypt every encoding and reference thumbnail from `old` to `new` in session `s`;
    returns the number of encodings."""
    rows = list(s.scalars(select(ReferenceEncoding)))
    for enc in rows:
        enc.vector = encrypt_vector(new, decrypt_row(old, enc), _row_aad(enc))
        enc.key_id = new.key_id
    for thumb in s.scalars(select(ReferenceThumbnail)):
        thumb.jpeg = encrypt_bytes(new, decrypt_thumbnail(old, thumb),
                                   thumbnail_aad(thumb.student_pk, thumb.reference_photo_id))
        thumb.key_id = new.key_id
    return len(rows)


def rotate_key(db: Database, *, actor: str) -> RotateResult:
    """Re-encrypt every encoding and reference thumbnail with a fresh key and replace the key file.

    Crash-safe: the new key is first written beside the old one (`photocheck.key.new`), the
    database is re-encrypted in one transaction, then the new file replaces the old. A crash
    before the commit leaves the old key in force; after it, the next open finishes the swap.
    """
    if os.environ.get(config.KEY_ENV):
        raise ProtectionError(f"the key comes from ${config.KEY_ENV}: rotation replaces a key file. Put the key in "
                              f"a 0600 file, point ${config.KEY_FILE_ENV} at it, unset ${config.KEY_ENV} and rotate")
    old = resolve_key(db)
    path = config.key_file()
    if old is None:
        key = create_key()
        with db.session() as s:
            _event(s, actor, "keys-rotate", f"no key yet: created key {key.key_id}")
        return RotateResult(None, key.key_id, path, 0)
    pending = _pending_path(path)
    pending.unlink(missing_ok=True)  # a rotation that crashed before its commit: never used
    new_secret = os.urandom(KEY_BYTES)
    _write_key_file(pending, new_secret)
    new = Key(new_secret, f"key file {path}", path)
    # immediate: an enrolment cannot slip in (under the old key) between reading and re-encrypting
    with db.session(immediate=True) as s:
        n = reencrypt(s, old, new)
        _event(s, actor, "keys-rotate", f"key {old.key_id} replaced by {new.key_id}: {n} encoding(s) "
                                        "re-encrypted")
    os.replace(pending, path)
    _fsync_dir(path.parent)
    scrub(db)
    return RotateResult(old.key_id, new.key_id, path, n)


@dataclass
class KeyStatus:
    source: str | None
    key_id: str | None
    stored_key_ids: list[str]
    encodings: int
    problem: str | None


def key_status(db: Database) -> KeyStatus:
    with db.session() as s:
        n = s.scalar(select(func.count()).select_from(ReferenceEncoding))
    ids = sorted(_stored_key_ids(db))
    try:
        key = resolve_key(db)
        problem = None
    except ProtectionError as exc:
        key, problem = None, str(exc)
        try:
            key = load_key()
        except ProtectionError:
            pass
    return KeyStatus(key.source if key else None, key.key_id if key else None, ids, n, problem)


# --- backup -----------------------------------------------------------------------------------


def backup(db: Database, dest: Path, *, actor: str) -> Path:
    """A consistent copy of the whole database, mode 0600, checked: SQLite `VACUUM INTO` (checked
    with `PRAGMA integrity_check`), or PostgreSQL's `pg_dump` custom format (checked by `pg_restore
    --list`; pg_dump must be on PATH).

    The copy holds the encodings encrypted; the key is not in it and must be kept separately.
    """
    backend = make_url(db.url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ProtectionError(f"`photocheck backup` copies SQLite and PostgreSQL databases; back up {backend} "
                              "with its own tools")
    pg_dump = pg_restore = None
    if backend == "postgresql":
        pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
        if not pg_dump or not pg_restore:
            raise ProtectionError("backing up PostgreSQL needs its client tools pg_dump and pg_restore on PATH "
                                  "(Debian: apt-get install postgresql-client), or run `pg_dump --format=custom` "
                                  "yourself (docs/administration.md, \"SQLite or PostgreSQL\")")
    dest = dest.expanduser()
    if dest.exists() or dest.is_symlink():
        raise ProtectionError(f"{dest} already exists: choose a new file name")
    if not dest.parent.is_dir():
        raise ProtectionError(f"no such folder: {dest.parent}")
    # Create it empty with 0600 first: the copy holds personal data (names, scan results).
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
        finally:
            os.close(fd)
    except OSError as exc:
        raise ProtectionError(f"cannot create {dest}: {exc.strerror or exc}") from None
    try:
        if backend == "postgresql":
            _pg_dump(db, dest, pg_dump, pg_restore)
        else:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("VACUUM INTO ?", (str(dest),))
            with sqlite3.connect(dest) as check:
                verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
            check.close()
            if verdict != "ok":
                raise ProtectionError(f"the backup failed its integrity check: {verdict}")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    with db.session() as s:
        _event(s, actor, "backup", f"backup written to {dest}")
    return dest


# URL query parameters libpq also reads from the environment (PG<NAME>).
_LIBPQ_PARAMS = ("host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "passfile", "connect_timeout")


def _libpq_env(url: str) -> dict[str, str]:
    """The connection settings of a postgresql URL as libpq environment variables (the password
    never goes on a command line, where other users could see it)."""
    u = make_url(url)
    env = {"PGHOST": u.host, "PGPORT": u.port, "PGUSER": u.username, "PGPASSWORD": u.password,
           "PGDATABASE": u.database}
    for name, value in u.query.items():  # e.g. ?host=/run/postgresql&port=5433&sslmode=require
        if name in _LIBPQ_PARAMS:
            env["PG" + name.upper()] = value[0] if isinstance(value, tuple) else value
    return {k: str(v) for k, v in env.items() if v is not None}


def _pg_dump(db: Database, dest: Path, pg_dump: str, pg_restore: str) -> None:
    env = {**os.environ, **_libpq_env(db.url)}
    proc = subprocess.run([pg_dump, "--format=custom", "--no-password", f"--file={dest}"], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProtectionError(f"pg_dump failed: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    check = subprocess.run([pg_restore, "--list", str(dest)], capture_output=True, text=True)
    if check.returncode != 0 or not re.search(r"TABLE DATA \S+ audit_events ", check.stdout):
        raise ProtectionError(f"the backup failed its check (pg_restore --list): {check.stderr.strip()}")
