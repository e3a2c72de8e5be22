"""Which files are photos or video clips, and the folder walk that finds them: by extension or by
the first bytes, never by decoding. Light to import (no numpy, no PIL): an unchanged rescan walks
its folders and decodes nothing."""
from __future__ import annotations

import errno
import logging
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from photocheck.results import printable_path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .png .webp .tif .tiff .heic .heif .avif .gif .bmp .mpo".split()
)

VIDEO_EXTENSIONS = frozenset(".mp4 .mov .m4v .webm .mkv .avi".split())

# Sniffed kind -> PIL formats allowed to open it. Anything else PIL could open
# (PSD, EPS, ICO, ...) is refused: fewer parsers, fewer surprises.
PIL_FORMATS: dict[str, tuple[str, ...]] = {
    "JPEG": ("JPEG", "MPO"),  # jpeg_factory upgrades to MPO itself
    "PNG": ("PNG",),
    "GIF": ("GIF",),
    "WEBP": ("WEBP",),
    "TIFF": ("TIFF",),
    "BMP": ("BMP",),
    "HEIF": ("HEIF",),  # pillow-heif
    "AVIF": ("AVIF",),  # Pillow's own AVIF plugin (pillow-heif 1.x has no AVIF decoder)
}

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}

# ISO-BMFF brands that are not video: still images (HEIF/AVIF, read as photos) and audio-only files.
_NOT_VIDEO_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis",
                     b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
# QuickTime files without an ftyp box start with one of these atoms.
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"pnot"}


def sniff_format(head: bytes) -> str | None:
    """Image kind from the first bytes (>= 32 recommended), or None.

    Returns one of JPEG, PNG, GIF, WEBP, TIFF, BMP, HEIF, AVIF. MPO starts like
    JPEG and is reported as "JPEG" here; load_image tells them apart.
    """
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 18 and struct.unpack_from("<I", head, 14)[0] in (12, 40, 52, 56, 64, 108, 124):
        return "BMP"  # also check the DIB header size: "BM" alone is too common in text
    if head[4:8] == b"ftyp":
        box_len = struct.unpack_from(">I", head, 0)[0]
        brands = {head[8:12]}
        end = min(len(head), box_len if box_len >= 16 else len(head))
        brands.update(head[i:i + 4] for i in range(16, end - 3, 4))
        if brands & _HEIF_BRANDS and not ({head[8:12]} & _AVIF_BRANDS):
            return "HEIF"
        if brands & _AVIF_BRANDS:
            return "AVIF"
    return None


def sniff_video(head: bytes) -> str | None:
    """Video container kind from a file's first bytes (>= 64 recommended), or None:
    MP4, M4V, MOV, WEBM, MKV or AVI. HEIF/AVIF images and audio-only MP4 brands are not video."""
    if head[4:8] == b"ftyp" and len(head) >= 12:
        major = head[8:12]
        box_len = struct.unpack_from(">I", head, 0)[0]
        end = min(len(head), box_len if box_len >= 16 else len(head))
        brands = {major} | {head[i:i + 4] for i in range(16, end - 3, 4)}
        if sniff_format(head) in ("HEIF", "AVIF") or major in _NOT_VIDEO_BRANDS:
            return None
        if major == b"qt  ":
            return "MOV"
        if major in (b"M4V ", b"M4VH", b"M4VP") or b"M4V " in brands:
            return "M4V"
        return "MP4"
    if head[4:8] in _QT_ATOMS:
        return "MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska or WebM, by its DocType
        if b"webm" in head[:64]:
            return "WEBM"
        if b"matroska" in head[:64]:
            return "MKV"
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


# --------------------------------------------------------------------------- walking

SkipCallback = Callable[[Path, str], None]


def _log_skip(path: Path, reason: str) -> None:
    log.warning("skipped %s: %s", path, reason)


def iter_image_files(paths: Iterable[str | os.PathLike], *, on_skip: SkipCallback | None = None,
                     on_error: SkipCallback | None = None, videos: bool = False) -> Iterator[Path]:
    """Yield the image files to screen, in a stable (sorted) order.

    Explicit file arguments are always yielded (load_image reports what is wrong
    with them). Directories are walked recursively: hidden entries are skipped,
    files are taken by image extension or by content signature, each real
    directory is visited once (symlink loops end).

    What was passed over on purpose (hidden entries, a folder already walked, a
    special file) goes to on_skip(path, reason). What was found but could not be
    read -- a folder that cannot be listed, an entry that cannot be examined, a
    file without an image extension whose content cannot be read to tell -- goes
    to on_error(path, reason): it may hold photos nobody looked at. Both default
    to a logged warning; reasons name the path and the OS error.

    `videos`: also yield video clips, by extension or content (photocheck/video.py).
    """
    skip = on_skip or _log_skip
    error = on_error or on_skip or _log_skip
    visited: set[tuple[int, int]] = set()
    extensions, sniff = IMAGE_EXTENSIONS, sniff_format
    if videos:
        extensions = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
        sniff = lambda head: sniff_format(head) or sniff_video(head)  # noqa: E731
    for p in paths:
        p = Path(p)
        try:
            is_dir = p.is_dir()
        except OSError as e:  # e.g. inside a folder that may not be searched
            error(p, f"cannot examine {os_error_text(p, e)}")
            continue
        if is_dir:
            yield from _walk(p, visited, skip, error, extensions, sniff)
        else:
            yield p


def os_error_text(path: str | os.PathLike, e: OSError) -> str:
    """`path: Permission denied [EACCES]`: the path, then the OS error as a person and a search
    engine can read it."""
    code = errno.errorcode.get(e.errno or 0)
    return f"{printable_path(path)}: {e.strerror or e}" + (f" [{code}]" if code else "")


def _walk(root: Path, visited: set[tuple[int, int]], skip: SkipCallback, error: SkipCallback,
          extensions: frozenset[str] = IMAGE_EXTENSIONS, sniff=sniff_format) -> Iterator[Path]:
    # Iterative depth-first walk (no recursion limit on deep trees), sorted by name.
    stack: list[Iterator[os.DirEntry]] = []

    def enter(d: Path) -> None:
        try:
            st = d.stat()
            key = (st.st_dev, st.st_ino)
            if key in visited:
                skip(d, "directory already visited (symlink loop or duplicate)")
                return
            visited.add(key)
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            error(d, f"cannot list folder {os_error_text(d, e)}")
            return
        stack.append(iter(entries))

    enter(root)
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        has_ext = path.suffix.lower() in extensions
        try:
            is_dir = entry.is_dir()  # follows symlinks
            is_file = not is_dir and entry.is_file()
        except OSError as e:
            if has_ext and not entry.name.startswith("."):
                yield path  # e.g. a symlink loop named like a photo: load_image reports it as an error
            else:
                error(path, f"cannot examine {os_error_text(path, e)}")
            continue
        if entry.name.startswith("."):
            if is_dir:
                skip(path, "hidden directory")
            elif is_file:  # a hidden photo is still a photo; macOS "._" metadata files are not images
                head = _read_head(path, error)
                if head is not None and sniff_format(head):
                    yield path
            continue
        if is_dir:
            enter(path)
        elif is_file:
            if has_ext:
                yield path
            else:
                head = _read_head(path, error)
                if head is not None and sniff(head):
                    yield path
        elif has_ext:
            # Broken symlink or special file with an image name: let load_image
            # report it as an error rather than dropping it silently.
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                mode = 0
            if stat.S_ISLNK(mode):
                yield path
            else:
                skip(path, "not a regular file")


def _read_head(path: Path, error: SkipCallback) -> bytes | None:
    """The first bytes of a file without an image extension, to tell whether it is a photo."""
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError as e:
        error(path, f"cannot read file {os_error_text(path, e)} (it may be a photo)")
        return None
