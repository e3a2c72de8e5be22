"""Atomic file replacement shared by the report writers."""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from photocheck import datadir


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Yield a file that replaces `path` only once the `with` block finishes without error.

    The temp file sits in the target's directory so os.replace is a rename on one filesystem
    (atomic on POSIX and Windows): readers see the old report or the new one, never half of one.
    On any error the temp file is removed and the old report, if any, is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports 'w' and 'wb', not {mode!r}")
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # The same permissions as a plain open() would give (mkstemp would force 0600), without
    # touching the umask; 0600 inside photocheck's data folder.
    fd = datadir.create_file(tmp, exclusive=True)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    # Persist the rename itself (POSIX); directories cannot be opened this way on Windows.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
