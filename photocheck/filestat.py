"""The scan's stat fast path: a file's sha256 without reading it, when its stat is unchanged.

For each file it hashes, the scan records (device, inode, size, mtime_ns, ctime_ns) as they were
before and after the read. A later scan reuses the recorded sha256 only if the file's stat is
exactly that record and the record's mtime and ctime were at least RACY_NS older than the moment
the bytes were read: a file written within the timestamp granularity of the hash could change
again without its timestamps moving ("racy git"), so it is always read again. ctime is set by
the kernel on every write (os.utime cannot set it back), so an in-place change is always seen.
Where st_ctime is not a change time (Windows: creation time) nothing is trusted.

Publishing, sign-off and recheck never use this: they read and hash the file itself
(images.file_sha256). `photocheck scan --rehash` reads and hashes every file.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from sqlalchemy import delete, select

from photocheck.db import Database
from photocheck.db.models import FileStat

RACY_NS = 2_000_000_000  # 2 s: coarser than any timestamp granularity in use (FAT's is 2 s)
TRUSTED = os.name == "posix"  # st_ctime is the inode change time (not Windows' creation time)
_CHUNK = 500  # paths per IN (...) query: under SQLite's variable limit

Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def path_key(path: str | os.PathLike) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()


def _int64(v: int) -> int:
    """An unsigned 64-bit stat field (device, inode) as a signed BIGINT."""
    return v - (1 << 64) if v >= (1 << 63) else v


def signature(path) -> Signature | None:
    """`path`'s (device, inode, size, mtime_ns, ctime_ns) now; None if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _int64(st.st_dev), _int64(st.st_ino), st.st_size, st.st_mtime_ns, st.st_ctime_ns


def settled(sig: Signature | None, at_ns: int) -> bool:
    """May `sig` be trusted later as "unchanged since `at_ns`"? Only if its file was last written
    RACY_NS before that moment, it has a stable inode number, and st_ctime is a change time."""
    return TRUSTED and sig is not None and sig[1] != 0 and max(sig[3], sig[4]) <= at_ns - RACY_NS


class FileHashes:
    """sha256 of the scan's files: the recorded one when the file's stat is unchanged (and
    `trust_stat`), else read and hashed; `save()` records what was hashed."""

    def __init__(self, db: Database, paths, *, trust_stat: bool = True):
        self.db = db
        self.trust = trust_stat and TRUSTED
        self.known: dict[str, tuple[Signature, str]] = {}  # path_key -> (signature, sha256), trusted records
        self.fresh: dict[str, FileStat] = {}               # records to store
        self.read = self.reused = 0
        if not self.trust:
            return
        keys = list({path_key(p) for p in paths})
        with db.session() as s:
            for i in range(0, len(keys), _CHUNK):
                for r in s.scalars(select(FileStat).where(FileStat.path_key.in_(keys[i:i + _CHUNK]))):
                    sig = (r.device, r.inode, r.size, r.mtime_ns, r.ctime_ns)
                    if settled(sig, r.hashed_at_ns):
                        self.known[r.path_key] = (sig, r.sha256)

    def recorded(self, path) -> str | None:
        """The recorded sha256 if `path`'s stat is exactly its trusted record now, else None."""
        if not self.trust:
            return None
        rec = self.known.get(path_key(path))
        return rec[1] if rec is not None and signature(path) == rec[0] else None

    def sha256(self, path) -> str | None:
        """`path`'s sha256 (None if it cannot be read): the recorded one if its stat is unchanged."""
        if (sha := self.recorded(path)) is not None:
            self.reused += 1
            return sha
        self.read += 1
        before = signature(path)
        started = time.time_ns()
        try:
            with open(path, "rb") as fh:
                sha = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError:
            return None
        self.note(path, sha, before, started)
        return sha

    def note(self, path, sha: str, before: Signature | None, started_ns: int) -> None:
        """Record that `path` held `sha` when read from `started_ns` on, `before` being its stat
        just before the read; kept only if the stat did not move during the read and the file
        was last written long enough before it (RACY_NS)."""
        if not settled(before, started_ns) or signature(path) != before:
            self.known.pop(path_key(path), None)  # changed, or too recent to trust: read again next time
            self.fresh.pop(path_key(path), None)
            return
        key = path_key(path)
        self.known[key] = (before, sha)
        self.fresh[key] = FileStat(path_key=key, device=before[0], inode=before[1], size=before[2],
                                   mtime_ns=before[3], ctime_ns=before[4], sha256=sha, hashed_at_ns=started_ns)

    def read_verified(self, path, sha: str) -> bytes | None:
        """`path`'s bytes if they are those of `sha`: checked by its trusted stat before and after
        the read, else by hashing them. None if it cannot be read or no longer holds `sha`."""
        trusted = self.recorded(path) == sha
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None
        if trusted and self.recorded(path) == sha:
            return data
        return data if hashlib.sha256(data).hexdigest() == sha else None

    def save(self) -> None:
        if not self.fresh:
            return
        rows = list(self.fresh.values())
        with self.db.session(immediate=True) as s:
            for i in range(0, len(rows), _CHUNK):
                chunk = rows[i:i + _CHUNK]
                s.execute(delete(FileStat).where(FileStat.path_key.in_([r.path_key for r in chunk])))
                s.add_all(chunk)
        self.fresh.clear()
