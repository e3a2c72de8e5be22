"""The data folder stays with its owner: what photocheck creates in it is private, whatever the umask.

The folder holds the no-consent list (in the SQLite database), the encryption key, the web
session secret and redacted copies. Folders photocheck creates there are 0700 and files 0600;
an existing data folder open to other accounts is reported (`data_dir_warning`), not changed.
Files written elsewhere (reports, published photos, --out folders) keep the usual umask modes;
backups and the key file are 0600 wherever they go (protect.py).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from photocheck import config

DIR_MODE = 0o700
FILE_MODE = 0o600


def in_data_dir(path: str | os.PathLike) -> bool:
    """True if `path` is the data folder or anywhere inside it (symlinks resolved)."""
    home = config.data_dir().expanduser().resolve()
    try:
        Path(path).expanduser().resolve().relative_to(home)
    except ValueError:
        return False
    return True


def make_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and its parents) if missing; inside the data folder every folder this
    creates, the data folder included, is 0700 whatever the umask. Existing folders are left alone."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise FileExistsError(f"not a folder: {path}")
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        private = in_data_dir(d)
        try:
            d.mkdir(mode=DIR_MODE if private else 0o777)
        except FileExistsError:
            continue  # another process made it first: its mode is its creator's business
        if private:
            os.chmod(d, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def _fix_mode(fd: int, path: Path) -> None:
    if hasattr(os, "fchmod") and in_data_dir(path):
        os.fchmod(fd, FILE_MODE)  # the umask could have taken the owner's bits, or left others'


def create_file(path: str | os.PathLike, *, exclusive: bool = False) -> int:
    """Open `path` for writing (created or truncated) and return the descriptor: 0600 inside the
    data folder whatever the umask, elsewhere 0666 less the umask as open() gives."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0) | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE if in_data_dir(path) else 0o666)
    try:
        _fix_mode(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: str | os.PathLike, mode: str = "wb", **kwargs) -> IO:
    """`open(path, mode)` for writing, with the modes of `create_file`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_file supports 'w' and 'wb', not {mode!r}")
    return os.fdopen(create_file(path), mode, **kwargs)


def touch_private(path: str | os.PathLike) -> bool:
    """Create an empty file at `path` with the data folder's file mode if it does not exist yet
    (SQLite then keeps that mode, and gives it to its -wal, -shm and -journal files); True if created."""
    try:
        os.close(create_file(path, exclusive=True))
    except FileExistsError:
        return False
    return True


def data_dir_warning() -> str | None:
    """A warning when the data folder exists and other accounts may enter it, else None."""
    home = config.data_dir()
    try:
        mode = stat.S_IMODE(home.stat().st_mode)
    except OSError:
        return None
    if not mode & 0o077:
        return None
    return (f"the photocheck data folder {home} is open to other accounts on this computer (mode {mode:04o}); "
            f"it holds the no-consent list. Make it private: chmod 700 {home}")
