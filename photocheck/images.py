"""Decode photos into upright 8-bit RGB images, or fail loudly.

Safety rule: a file that cannot be decoded completely and unambiguously raises
ImageError with a human reason. It must never come back as an empty or partial
picture, because the screener would then report "no faces" for a photo nobody
has looked at.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from photocheck.mediafiles import PIL_FORMATS, os_error_text, sniff_format

log = logging.getLogger(__name__)

# Our own ceiling on decoded pixels (checked on the header, before decoding).
# PIL's own bomb limit (Image.MAX_IMAGE_PIXELS, ~89 MP by default) is honoured as
# well -- its warning is treated as an error -- so the effective limit is the lower
# of the two; see effective_pixel_limit().
MAX_PIXELS = 200_000_000

# EXIF orientation -> transpose that makes the stored pixels upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Transparent pixels are composited on mid-grey: contrasts with both light and dark
# skin and hair, so a face cut out on a transparent background stays detectable.
_BACKGROUND = (128, 128, 128)


class ImageError(Exception):
    """The file cannot be screened; str(error) is the human reason."""


class UprightView:
    """A decoded RGB image as seen upright (its EXIF orientation applied), without an upright copy
    of the whole: crops and resized copies are cut from the stored pixels, then turned.

    A scan reads photos only through this, so a photo's upright array is never made (memory and
    CPU: docs/benchmarks.md, "Scan process layout"). Coordinates are upright ones, as for the
    array; tests/test_images.py checks every orientation against `array()`."""

    def __init__(self, image: Image.Image, orientation: int = 1):
        if image.mode != "RGB":
            raise ValueError(f"UprightView needs an RGB image, not {image.mode}")
        self.image = image  # as stored (decoded), not turned
        self.orientation = orientation if orientation in _TRANSPOSE else 1
        self._op = _TRANSPOSE.get(self.orientation)
        sw, sh = image.size
        self.width, self.height = (sh, sw) if self.orientation >= 5 else (sw, sh)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3), as the upright array's."""
        return self.height, self.width, 3

    def array(self) -> np.ndarray:
        """The whole image upright, as a writable H x W x 3 uint8 array (a copy)."""
        return _to_array(self.image, self.orientation)

    def _stored_point(self, x: int, y: int) -> tuple[int, int]:
        """Upright pixel-edge coordinates -> stored ones (edges, not pixel centres: a box's two
        corners map to the stored box's two corners)."""
        sw, sh = self.image.size
        return {1: (x, y), 2: (sw - x, y), 3: (sw - x, sh - y), 4: (x, sh - y),
                5: (y, x), 6: (y, sh - x), 7: (sw - y, sh - x), 8: (sw - y, x)}[self.orientation]

    def crop(self, top: int, right: int, bottom: int, left: int) -> np.ndarray:
        """Upright rows top..bottom and columns left..right, clipped to the image like a numpy
        slice of the upright array: a writable uint8 copy."""
        top, left = max(0, top), max(0, left)
        bottom, right = min(self.height, bottom), min(self.width, right)
        if bottom <= top or right <= left:
            return np.zeros((max(0, bottom - top), max(0, right - left), 3), np.uint8)
        (x0, y0), (x1, y1) = self._stored_point(left, top), self._stored_point(right, bottom)
        return _to_array(self.image, self.orientation, box=(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))

    def resized(self, size: tuple[int, int], block_average: bool = True) -> Image.Image:
        """The image upright at `size` (upright width, height), by resize_rows(): resized as
        stored, then turned. The same pixels as ArrayView(array()).resized(size, ...) for upright
        photos; for turned ones Pillow's two bilinear passes run in the other order, so pixels
        may differ by a grey level."""
        wn, hn = size
        im = self.image
        sw, sh = im.size
        out = resize_rows(lambda y0, y1: im.crop((0, y0, sw, y1)), lambda: im, sw, sh,
                          (hn, wn) if self.orientation >= 5 else (wn, hn), block_average=block_average)
        return out.transpose(self._op) if self._op is not None else out


class ArrayView:
    """An upright RGB uint8 array behind UprightView's interface (shape, crop, resized, array), so
    that code reading photos treats both alike (as_view)."""

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb
        self.height, self.width = rgb.shape[:2]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rgb.shape

    def array(self) -> np.ndarray:
        """The array itself, not a copy (read it, do not write to it)."""
        return self.rgb

    def crop(self, top: int, right: int, bottom: int, left: int) -> np.ndarray:
        """Rows top..bottom and columns left..right, clipped like a numpy slice: a writable copy."""
        return np.array(self.rgb[max(0, top):bottom, max(0, left):right])

    def resized(self, size: tuple[int, int], block_average: bool = True, *, band: int | None = None) -> Image.Image:
        """The image at `size` by resize_rows() on bands of the array (no whole-photo PIL copy
        unless Pillow must resize it whole)."""
        rgb = self.rgb
        return resize_rows(lambda y0, y1: Image.fromarray(rgb[y0:y1]), lambda: Image.fromarray(rgb),
                           self.width, self.height, size, band=band, block_average=block_average)


View = UprightView | ArrayView


def as_view(image: np.ndarray | View) -> View:
    """A view as it is; an array (grey, RGBA, any dtype) as the ArrayView of as_rgb(array)."""
    return image if isinstance(image, (UprightView, ArrayView)) else ArrayView(as_rgb(image))


def as_rgb(a: np.ndarray) -> np.ndarray:
    """`a` as an H x W x 3 uint8 C-contiguous array (itself if it is one already): grey stacked,
    alpha dropped, values clipped to 0..255."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def resize_rows(rows: Callable[[int, int], Image.Image], whole: Callable[[], Image.Image], w: int, h: int,
                size: tuple[int, int], *, band: int | None = None, block_average: bool = True) -> Image.Image:
    """A w x h RGB image resized to `size`, reading it a band of rows at a time where it can:
    rows(y0, y1) gives rows y0..y1 as a PIL image, whole() the whole image.

    With block_average, when it shrinks by k >= 2 on both sides (a camera photo for the detector's
    1984 px pass: k = 2), k x k blocks are averaged first (Image.reduce), then bilinear does the
    rest; otherwise bilinear alone. The detector thresholds are calibrated on these pixels, and
    block averaging costs about half the CPU of bilinear alone (docs/benchmarks.md).

    Same pixels as whole().reduce(k).resize(size) (or whole().resize(size)), with less memory:
    Pillow resizes in two passes, each rounded to 8 bits, horizontally first unless the height
    shrinks by more than twice as many pixels as the width (newer Pillow: python-pillow/Pillow
    #9549; always horizontally first before). So when both sides shrink and the height by at most
    1.9x the width's pixels, the averaging and the horizontal pass run on bands of `band` rows (a
    multiple of k, so no block straddles two bands; default < 1 MB of PIL pixels) and only the
    vertical pass sees a whole (narrower) image; otherwise (small images upscaled, tall panoramas)
    Pillow resizes whole(). tests/test_detect_tiles.py checks this equality for the usual camera
    shapes."""
    wn, hn = size
    k = min(w // wn, h // hn) if block_average else 1
    k = k if k >= 2 else 1
    rw, rh = -(-w // k), -(-h // k)  # size after averaging (reduce keeps a partial last block)
    if not (wn < rw and hn < rh and (rh - hn) <= 1.9 * (rw - wn)):
        im = whole()
        if k > 1:
            im = im.reduce(k)
        return im if im.size == (wn, hn) else im.resize((wn, hn), Image.Resampling.BILINEAR)
    band = band or max(16, 960_000 // (4 * w))
    band = k * max(1, band // k)
    wide = Image.new("RGB", (wn, rh))
    for y in range(0, h, band):
        strip = rows(y, min(h, y + band))
        if k > 1:
            strip = strip.reduce(k)
        wide.paste(strip.resize((wn, strip.height), Image.Resampling.BILINEAR), (0, y // k))
        del strip
    return wide.resize((wn, hn), Image.Resampling.BILINEAR)


@dataclass
class LoadedImage:
    view: UprightView    # the decoded pixels, upright (possibly reduced, see scale)
    width: int           # upright width of the full-resolution image
    height: int          # upright height of the full-resolution image
    format: str          # PIL format: JPEG, MPO, PNG, WEBP, TIFF, HEIF, AVIF, GIF, BMP
    orientation: int     # EXIF orientation applied (1 if none)
    sha256: str          # hex digest of the file bytes
    scale: float = 1.0   # pixels per original pixel; pixel coords / scale = original upright coords

    @functools.cached_property
    def rgb(self) -> np.ndarray:
        """Upright H x W x 3 uint8 array, made on first use (a scan never makes it: `view`)."""
        return self.view.array()


# --------------------------------------------------------------------------- sniffing

def _header_dims(data: bytes, kind: str) -> tuple[int, int] | None:
    """Width/height straight from the header, for formats where that is easy.

    Lets us reject a bomb with its real dimensions before PIL even opens it.
    Returns None when unknown; PIL's header is then checked after open.
    """
    try:
        if kind == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        if kind == "GIF":
            return struct.unpack_from("<HH", data, 6)
        if kind == "BMP":
            w, h = struct.unpack_from("<ii", data, 18)
            return abs(w), abs(h)
        if kind == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
        if kind == "JPEG":
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    return None
                marker = data[i + 1]
                if marker == 0xFF:  # fill byte
                    i += 1
                    continue
                seg_len = struct.unpack_from(">H", data, i + 2)[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    h, w = struct.unpack_from(">HH", data, i + 5)
                    return w, h
                i += 2 + seg_len
    except struct.error:
        return None
    return None


def effective_pixel_limit() -> int:
    """The lower of MAX_PIXELS and PIL's current Image.MAX_IMAGE_PIXELS (read, never changed)."""
    pil = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, pil) if pil else MAX_PIXELS


def _check_pixels(w: int, h: int) -> None:
    limit = effective_pixel_limit()
    if w * h > limit:
        who = "" if limit == MAX_PIXELS else " (PIL's Image.MAX_IMAGE_PIXELS)"
        raise ImageError(
            f"decompression bomb: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the "
            f"{limit / 1e6:.0f} MP limit{who}"
        )
    if w <= 0 or h <= 0:
        raise ImageError(f"invalid image size {w}x{h}")


# --------------------------------------------------------------------------- HEIF

_heif_lock = threading.Lock()
_heif_state: str | None = None  # None = not tried, "" = registered, else the import error


def _ensure_heif() -> None:
    """Register pillow-heif's opener on first need (importing it is slow and global)."""
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                from pillow_heif import register_heif_opener

                register_heif_opener()
                _heif_state = ""
            except Exception as e:  # pragma: no cover - depends on the install
                _heif_state = f"{type(e).__name__}: {e}"
    if _heif_state:
        raise ImageError(f"HEIF support unavailable ({_heif_state})")


# --------------------------------------------------------------------------- loading

def file_sha256(path: str | os.PathLike) -> str | None:
    """The file's sha256 now, or None if it cannot be read (no decoding)."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def load_image(path: str | os.PathLike, *, max_side: int | None = None) -> LoadedImage:
    """Decode `path` fully into an upright RGB array, or raise ImageError.

    The file is read once; the hash and the pixels come from the same bytes, so
    a file changing under us cannot get a hash of one version and faces of another.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"cannot read file {os_error_text(path, e)}") from e
    sha = hashlib.sha256(data).hexdigest()

    if not data:
        raise ImageError("not an image (zero bytes)")
    kind = sniff_format(data[:64])
    if kind is None:
        raise ImageError(f"not an image (unrecognised content, starts with {data[:8]!r})")
    if kind == "HEIF":
        _ensure_heif()
    dims = _header_dims(data, kind)
    if dims:
        _check_pixels(*dims)

    Image.init()
    formats = [f for f in PIL_FORMATS[kind] if f in Image.OPEN]
    if not formats:
        raise ImageError(f"{kind} support is not available in this installation")

    # face_recognition sets this True at import; a truncated photo must be an
    # error, not a half-grey picture with "no faces". Forced at every load and
    # deliberately not restored (restoring could re-enable it under a
    # concurrent decode in another thread).
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # DecompressionBombWarning is only raised if someone set a warnings filter. PIL's message
        # names its own error threshold (twice the limit): say the limit that applies instead.
        size = re.search(r"\((\d+) pixels\)", str(e))
        if not size:
            raise ImageError(f"decompression bomb: {e}") from e
        limit = effective_pixel_limit()
        who = "" if limit == MAX_PIXELS else " (PIL's Image.MAX_IMAGE_PIXELS)"
        raise ImageError(f"decompression bomb: {int(size.group(1)) / 1e6:.0f} MP exceeds the "
                         f"{limit / 1e6:.0f} MP limit{who}") from e
    except Exception as e:
        raise ImageError(f"corrupt {kind}: {_describe(e)}") from e

    with im:
        fmt = im.format or kind
        w, h = im.size
        _check_pixels(w, h)  # also covers PIL's warning band (limit .. 2x limit)
        _reject_multi_frame(im, fmt)

        target = None
        if max_side is not None and max(w, h) > max_side:
            if max_side < 1:
                raise ValueError("max_side must be >= 1")
            s = max_side / max(w, h)
            target = (max(1, round(w * s)), max(1, round(h * s)))
            if fmt in ("JPEG", "MPO"):
                # DCT scaling: decode at 1/2, 1/4 or 1/8 directly (never below target).
                try:
                    im.draft(None, target)
                except Exception:
                    pass  # draft is only an optimisation

        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
        except MemoryError as e:
            raise ImageError(f"out of memory decoding {fmt} {w}x{h}") from e
        except Exception as e:
            msg = _describe(e)
            if isinstance(e, EOFError) or "truncated" in msg.lower():
                raise ImageError(f"truncated {fmt}: {msg}") from e
            raise ImageError(f"corrupt {fmt}: {msg}") from e

        # After load: a PNG eXIf chunk may follow the pixel data.
        orientation, pre_rotated = _orientation(im)
        try:
            out = _to_rgb(im)
        except ImageError:
            raise
        except Exception as e:
            raise ImageError(f"cannot convert {fmt} mode {im.mode} to RGB: {_describe(e)}") from e

    del im  # `out` may be the decoded image itself: from here only `out` keeps it alive
    if target is not None and out.size != target:
        out = out.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if out.mode != "RGB":  # pragma: no cover - defensive (_to_rgb returns RGB)
        raise ImageError(f"internal: unexpected pixel mode {out.mode}")
    view = UprightView(out, 1 if pre_rotated else orientation)
    del out
    if not pre_rotated and orientation >= 5:
        w, h = h, w
    scale = view.width / w if target is not None else 1.0
    return LoadedImage(view=view, width=w, height=h, format=fmt, orientation=orientation,
                       sha256=sha, scale=scale)


def _to_array(im: Image.Image, orientation: int = 1, band: int = 256,
              box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A writable H x W x 3 uint8 copy of an RGB image, or of its `box` (left, top, right,
    bottom, stored pixels, inside the image), turned upright for its EXIF `orientation`
    (_TRANSPOSE), filled band by band.

    Bands, because np.array(im) would make two transient whole copies (via im.tobytes()), PIL's
    transpose of the whole image a second image, and a numpy rotation of the whole array misses
    the cache: each band is turned by PIL and lands as a band of rows (orientations 2-4) or
    columns (5-8) of the output (figures: docs/benchmarks.md). tests/test_images.py checks every
    orientation against PIL's whole-image one."""
    x0, top, x1, bottom = box if box is not None else (0, 0, *im.size)
    w, h = x1 - x0, bottom - top
    op = _TRANSPOSE.get(orientation)
    out = np.empty((w, h, 3) if orientation >= 5 else (h, w, 3), dtype=np.uint8)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        part = im.crop((x0, top + y0, x1, top + y1))
        if op is not None:
            part = part.transpose(op)
        # Where source rows y0..y1 land: rows (2-4) or columns (5-8), counted from the far end
        # where the turn reverses them (3, 4: upside down; 6, 7: the first row becomes the last column).
        lo, hi = (h - y1, h - y0) if orientation in (3, 4, 6, 7) else (y0, y1)
        if orientation >= 5:
            out[:, lo:hi] = np.asarray(part)
        else:
            out[lo:hi] = np.asarray(part)
    return out


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _reject_multi_frame(im: Image.Image, fmt: str) -> None:
    """Only the first frame would be screened, so several frames is an error.

    MPO is the exception: its extra frames are the stereo pair / preview of the
    primary image (same scene), and we screen the primary.
    """
    if fmt == "MPO":
        return
    try:
        n = int(getattr(im, "n_frames", 1) or 1)
    except Exception as e:
        raise ImageError(f"corrupt {fmt}: cannot count frames: {_describe(e)}") from e
    if n <= 1:
        return
    if fmt == "TIFF":
        raise ImageError(f"multi-page TIFF with {n} pages: split the pages to screen them")
    if fmt in ("HEIF", "AVIF"):
        raise ImageError(f"{fmt} with {n} images: export them to screen them")
    raise ImageError(f"animated image with {n} frames: export the frames to screen them")


def _orientation(im: Image.Image) -> tuple[int, bool]:
    """(EXIF / TIFF / XMP orientation, 1 if absent; True if the decoder already applied it).

    Unreadable EXIF is an ImageError rather than "assume upright": the face
    detectors miss faces turned 90 degrees, so guessing wrong could pass a
    protected child's face; an error sends the photo to a human instead.
    Value 0 ("unknown", written by some software) is treated as 1, as viewers do.
    """
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        body = raw[6:] if raw[:6] == b"Exif\x00\x00" else raw
        # PIL silently returns an empty Exif for a block it cannot parse, which
        # would read as "upright"; a bad TIFF header means we really don't know.
        if len(body) >= 8 and body[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ImageError("unreadable EXIF (bad header), orientation unknown")
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception as e:
        raise ImageError(f"unreadable EXIF, orientation unknown: {_describe(e)}") from e
    if im.format == "HEIF" and value in (0, 1, None):
        # pillow-heif applies the rotation itself while decoding and resets the
        # tag to 1; report what was applied, without applying it twice.
        applied = im.info.get("original_orientation")
        if isinstance(applied, int) and 1 <= applied <= 8:
            return applied, True
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if value == 0 or value is None:
        return 1, False
    if not isinstance(value, int) or not 1 <= value <= 8:
        raise ImageError(f"invalid EXIF orientation {value!r}")
    return value, False


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any decoded mode to 8-bit RGB without losing what a face looks like."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("L", "1", "YCbCr", "HSV", "RGBX", "CMYK"):
        # CMYK: PIL already un-inverts Adobe CMYK JPEGs at decode; this is the
        # plain (profile-less) CMYK->RGB formula, good enough for detection.
        return im.convert("RGB")
    if mode == "P":
        if "transparency" in im.info or im.palette and im.palette.mode == "RGBA":
            return _flatten(im.convert("RGBA"))
        return im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _flatten(im.convert("RGBA"))
    if mode == "LAB":
        # PIL's plain convert() treats LAB as if it were RGB-ish; go through lcms.
        from PIL import ImageCms

        t = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        return ImageCms.applyTransform(im, t)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_gray_to_u8(im), "L").convert("RGB")
    # Unknown mode: try PIL's generic conversion, failing loudly.
    return im.convert("RGB")


def _flatten(rgba: Image.Image) -> Image.Image:
    a = np.asarray(rgba)
    if a[..., 3].max() == 0:
        # Fully transparent everywhere is a broken alpha channel (e.g. 32-bit BMP
        # with a zero X byte), not an invisible picture: keep the colour data.
        return rgba.convert("RGB")
    bg = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def _gray_to_u8(im: Image.Image) -> np.ndarray:
    """Scale high-bit-depth grey to 0..255 by its bit depth (no clipping at 255)."""
    a = np.asarray(im)
    if im.mode == "F" or a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:
            return (a * 255.0 + 0.5).astype(np.uint8)
        return _stretch(a, lo, hi)
    a = a.astype(np.float64)
    bits = 16 if im.mode.startswith("I;16") else None
    tags = getattr(im, "tag_v2", None)  # TIFF: declared BitsPerSample
    if tags is not None:
        bps = tags.get(258)
        if isinstance(bps, tuple):
            bps = bps[0] if bps else None
        if isinstance(bps, int) and 8 < bps <= 32:
            bits = bps
    if bits is None and im.format == "PNG":
        bits = 16
    lo, hi = float(a.min()), float(a.max())
    if bits is not None and lo >= 0 and hi <= 2 ** bits - 1:
        return (a * (255.0 / (2 ** bits - 1)) + 0.5).astype(np.uint8)
    return _stretch(a, lo, hi)  # signed or unknown depth: full range of the data


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return ((a - lo) * (255.0 / (hi - lo)) + 0.5).clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- walking
