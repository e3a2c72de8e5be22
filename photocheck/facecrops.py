"""Face crops for reviewers: the small reference thumbnail made at enrolment, and crops of
scanned photos cut on demand from the photo file (never written anywhere)."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from photocheck.results import Box

THUMB_PX = 128   # reference thumbnails: enough to recognise a face, small enough to keep encrypted
CROP_PX = 160    # crops of scanned photos shown beside them
MARGIN = 0.3     # context around the face box on each side, as a fraction of its side


def square_around(box: Box, width: int, height: int, margin: float = MARGIN) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square around an upright (top, right, bottom, left) box,
    with `margin` of context on each side, clipped to the image."""
    top, right, bottom, left = box
    half = max(right - left, bottom - top) * (1 + 2 * margin) / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return (max(0, round(cx - half)), max(0, round(cy - half)),
            min(width, round(cx + half)), min(height, round(cy + half)))


def _jpeg(im: Image.Image, px: int, quality: int = 85) -> bytes:
    im = im.convert("RGB")
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def face_thumbnail(rgb: np.ndarray, box: Box, px: int = THUMB_PX) -> bytes:
    """A JPEG of the face in an upright RGB array (a reference photo at enrolment)."""
    h, w = rgb.shape[:2]
    left, top, right, bottom = square_around(box, w, h)
    return _jpeg(Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right])), px)


def photo_face_crop(path: str | Path, box: Box, px: int = CROP_PX) -> bytes:
    """A JPEG of one face of a scanned photo, cut from the file now (box in upright pixels).

    JPEG draft decoding reads only the scale the crop needs, so a small face of a 12 MP photo
    does not cost a full decode.
    """
    from photocheck.reports.html_report import _register_heif

    _register_heif()
    with Image.open(path) as src:
        w, h = src.size
        if src.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that swap the axes
            w, h = h, w
        left, top, right, bottom = square_around(box, w, h)
        side = max(right - left, bottom - top, 1)
        if side > px:
            f = px / side
            src.draft("RGB", (math.ceil(src.size[0] * f), math.ceil(src.size[1] * f)))
        im = ImageOps.exif_transpose(src)
        sx, sy = im.width / w, im.height / h
        im = im.crop((math.floor(left * sx), math.floor(top * sy), math.ceil(right * sx), math.ceil(bottom * sy)))
        return _jpeg(im, px)
