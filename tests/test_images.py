"""photocheck.images: every odd input is either decoded correctly or an ImageError.

All bad/odd files are generated in tmp_path; real photos come from ../shared/faces.
"""
from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from photocheck import images
from photocheck.images import ImageError, load_image
from photocheck.mediafiles import iter_image_files, sniff_format
from tests.helpers import FACES

GREY = images._BACKGROUND


def real(rel: str) -> Path:
    p = FACES / rel
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def save(tmp_path: Path, name: str, im: Image.Image, fmt: str, **kw) -> Path:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    p = tmp_path / name
    p.write_bytes(buf.getvalue())
    return p


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(w: int, h: int, bit_depth: int, color_type: int, rows: bytes | None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if rows is not None:
        out += png_chunk(b"IDAT", zlib.compress(rows))
    return out + png_chunk(b"IEND", b"")


def tiff_bytes(w: int, h: int, bps: list[int], photometric: int, pixels: bytes) -> bytes:
    """Minimal little-endian uncompressed single-strip TIFF (PIL can't write 48-bit RGB)."""
    spp = len(bps)
    n_entries = 9
    ifd_off = 8
    extra_off = ifd_off + 2 + n_entries * 12 + 4
    bps_data = struct.pack(f"<{spp}H", *bps) if spp > 2 else b""
    data_off = extra_off + len(bps_data)
    bps_field = struct.pack("<I", extra_off) if spp > 2 else struct.pack("<HH", *(bps + [0])[:2])
    entries = [
        struct.pack("<HHI", 256, 4, 1) + struct.pack("<I", w),
        struct.pack("<HHI", 257, 4, 1) + struct.pack("<I", h),
        struct.pack("<HHI", 258, 3, spp) + bps_field,
        struct.pack("<HHI", 259, 3, 1) + struct.pack("<HH", 1, 0),
        struct.pack("<HHI", 262, 3, 1) + struct.pack("<HH", photometric, 0),
        struct.pack("<HHI", 273, 4, 1) + struct.pack("<I", data_off),
        struct.pack("<HHI", 277, 3, 1) + struct.pack("<HH", spp, 0),
        struct.pack("<HHI", 278, 4, 1) + struct.pack("<I", h),
        struct.pack("<HHI", 279, 4, 1) + struct.pack("<I", len(pixels)),
    ]
    ifd = struct.pack("<H", n_entries) + b"".join(entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + ifd + bps_data + pixels


def jpeg_of_real_photo() -> bytes:
    return real("groups/obama_and_biden.jpg").read_bytes()


# --------------------------------------------------------------------------- broken input

def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="zero bytes"):
        load_image(p)


def test_text_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("these are not pixels\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


def test_missing_file_is_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "nope.jpg")


def test_truncated_jpeg_even_with_face_recognition_setting(tmp_path, monkeypatch):
    data = jpeg_of_real_photo()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    # face_recognition does exactly this at import time.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="truncated JPEG"):
        load_image(p)


def test_truncated_synthetic_jpeg_and_png(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        p = save(tmp_path, f"n.{fmt}", noise, fmt)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(ImageError, match=f"(truncated|corrupt) {fmt}"):
            load_image(p)


def test_corrupt_png_crc(tmp_path):
    data = bytearray(png_bytes(4, 4, 8, 0, b"\x00" * 5 * 4))
    data[29] ^= 0xFF  # inside IHDR's CRC
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="PNG"):
        load_image(p)


def test_unreadable_exif_is_error_not_upright(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (10, 200, 30)).save(buf, "JPEG")
    d = buf.getvalue()
    app1 = b"Exif\x00\x00" + b"XX\x00\x2a garbage bytes"
    seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    p = tmp_path / "badexif.jpg"
    p.write_bytes(d[:2] + seg + d[2:])
    with pytest.raises(ImageError, match="EXIF"):
        load_image(p)


def test_unsupported_format_refused(tmp_path):
    # PIL can open PCX, but it is not on the allow-list.
    p = save(tmp_path, "x.jpg", Image.new("RGB", (4, 4)), "PCX")
    with pytest.raises(ImageError, match="not an image"):
        load_image(p)


# --------------------------------------------------------------------------- bombs

def test_bomb_png_header_rejected_fast(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bytes(50000, 50000, 8, 2, None))
    t = time.perf_counter()
    with pytest.raises(ImageError, match=r"decompression bomb: 50000x50000 = 2500 MP"):
        load_image(p)
    assert time.perf_counter() - t < 0.5


def test_bomb_tiff_via_pil_check(tmp_path):
    # No hand-parsed header for TIFF: PIL's own bomb error must become an ImageError.
    p = tmp_path / "bomb.tif"
    p.write_bytes(tiff_bytes(50000, 50000, [8], 1, b"\x00" * 16))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(p)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pil_warning_band_is_an_error(tmp_path, monkeypatch):
    # Between PIL's limit and 2x it PIL only warns; we refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    p = tmp_path / "w.tif"
    p.write_bytes(tiff_bytes(150, 100, [8], 1, b"\x80" * 15000))
    with pytest.raises(ImageError, match=r"150x100.*MAX_IMAGE_PIXELS"):
        load_image(p)


def test_bomb_warning_filter_as_error(tmp_path, monkeypatch):
    # Someone else's process-wide "error" filter must still give an ImageError.
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    p = tmp_path / "w.tif"
    p.write_bytes(tiff_bytes(150, 100, [8], 1, b"\x80" * 15000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="decompression bomb"):
            load_image(p)


# --------------------------------------------------------------------------- content, not extension

@pytest.mark.parametrize("fmt,name", [("PNG", "x.jpg"), ("JPEG", "x.png"), ("JPEG", "noext"), ("WEBP", "x.dat")])
def test_wrong_extension_loads(tmp_path, fmt, name):
    p = save(tmp_path, name, Image.new("RGB", (40, 30), (20, 120, 220)), fmt, **({"quality": 95} if fmt != "PNG" else {}))
    li = load_image(p)
    assert li.format == fmt
    assert (li.width, li.height) == (40, 30)
    assert np.abs(li.rgb[15, 20].astype(int) - (20, 120, 220)).max() <= 6


def test_real_photos_load_and_hash():
    import hashlib

    p = real("groups/obama_and_biden.jpg")
    li = load_image(p)
    assert li.rgb.dtype == np.uint8 and li.rgb.shape == (li.height, li.width, 3)
    assert li.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert li.orientation == 1 and li.scale == 1.0


def test_real_rgba_png():
    li = load_image(real("edge/32bit.png"))
    assert li.format == "PNG"
    assert li.rgb.shape == (1200, 626, 3)
    assert li.rgb.std() > 20  # a real picture, not a flat fill


# --------------------------------------------------------------------------- modes

def test_cmyk_jpeg_colour(tmp_path):
    im = Image.new("RGB", (32, 32), (200, 30, 40)).convert("CMYK")
    p = save(tmp_path, "cmyk.jpg", im, "JPEG", quality=95)
    assert b"Adobe" in p.read_bytes()  # libjpeg writes inverted CMYK + Adobe marker
    li = load_image(p)
    assert np.abs(li.rgb[16, 16].astype(int) - (200, 30, 40)).max() <= 12


def test_16bit_grey_png_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    p = save(tmp_path, "g16.png", Image.fromarray(a), "PNG")
    li = load_image(p)
    assert li.rgb[0, :, 0].tolist() == [0, 128, 255, 1]
    assert (li.rgb[..., 0] == li.rgb[..., 2]).all()


def test_16bit_grey_tiff(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    p = save(tmp_path, "g16.tif", Image.fromarray(a), "TIFF")
    assert load_image(p).rgb[0, :, 1].tolist() == [0, 128, 255]


def test_48bit_rgb_png_and_tiff(tmp_path):
    px = [(65535, 0, 32768), (0, 65535, 256)]
    row = b"".join(struct.pack(">3H", *c) for c in px)
    p = tmp_path / "rgb48.png"
    p.write_bytes(png_bytes(2, 1, 16, 2, b"\x00" + row))
    assert load_image(p).rgb[0].tolist() == [[255, 0, 128], [0, 255, 1]]

    t = tmp_path / "rgb48.tif"
    t.write_bytes(tiff_bytes(2, 1, [16, 16, 16], 2, b"".join(struct.pack("<3H", *c) for c in px)))
    li = load_image(t)
    assert li.format == "TIFF"
    assert li.rgb[0].tolist() == [[255, 0, 128], [0, 255, 1]]


def test_64bit_rgba_png(tmp_path):
    row = struct.pack(">4H", 65535, 0, 0, 65535) + struct.pack(">4H", 0, 65535, 0, 0)
    p = tmp_path / "rgba64.png"
    p.write_bytes(png_bytes(2, 1, 16, 6, b"\x00" + row))
    assert load_image(p).rgb[0].tolist() == [[255, 0, 0], list(GREY)]


def test_rgba_composited_on_grey(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., :3] = (250, 10, 10)
    a[:2, :, 3] = 255  # top opaque, bottom fully transparent
    p = save(tmp_path, "a.png", Image.fromarray(a, "RGBA"), "PNG")
    li = load_image(p)
    assert li.rgb[0, 0].tolist() == [250, 10, 10]
    assert li.rgb[3, 3].tolist() == list(GREY)


def test_all_transparent_alpha_keeps_colour(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., :3] = (250, 10, 10)  # alpha all zero: a broken channel, keep what is there
    p = save(tmp_path, "a0.png", Image.fromarray(a, "RGBA"), "PNG")
    assert load_image(p).rgb[1, 1].tolist() == [250, 10, 10]


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 2), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((3, 1), 1)
    p = save(tmp_path, "p.png", im, "PNG", transparency=0)
    li = load_image(p)
    assert li.rgb[0, 0].tolist() == list(GREY)
    assert li.rgb[1, 3].tolist() == [255, 0, 0]


@pytest.mark.parametrize("mode,value,expected", [
    ("L", 77, [77, 77, 77]),
    ("1", 1, [255, 255, 255]),
    ("LA", (90, 255), [90, 90, 90]),
    ("YCbCr", (128, 128, 128), [128, 128, 128]),
])
def test_other_modes(tmp_path, mode, value, expected):
    fmt = "JPEG" if mode == "YCbCr" else ("TIFF" if mode in ("1",) else "PNG")
    p = save(tmp_path, f"m.{fmt}", Image.new(mode, (8, 8), value), fmt)
    assert np.abs(load_image(p).rgb[4, 4].astype(int) - expected).max() <= 2


def test_float_and_lab_tiff(tmp_path):
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert load_image(save(tmp_path, "f.tif", f, "TIFF")).rgb[0, :, 0].tolist() == [0, 128, 255]
    lab = save(tmp_path, "lab.tif", Image.new("LAB", (4, 4), (255, 128, 128)), "TIFF")
    assert load_image(lab).rgb[2, 2].min() >= 245  # L=100 is white, not a colour cast


def test_single_frame_gif_and_bmp(tmp_path):
    im = Image.new("RGB", (8, 8), (0, 0, 255))
    assert load_image(save(tmp_path, "x.gif", im, "GIF")).rgb[4, 4].tolist() == [0, 0, 255]
    assert load_image(save(tmp_path, "x.bmp", im, "BMP")).rgb[4, 4].tolist() == [0, 0, 255]


# --------------------------------------------------------------------------- multi-frame

def frames():
    return [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_rejected(tmp_path, fmt):
    f = frames()
    p = save(tmp_path, f"anim.{fmt}", f[0], fmt, save_all=True, append_images=f[1:], duration=100)
    with pytest.raises(ImageError, match="animated image with 3 frames"):
        load_image(p)


def test_multipage_tiff_rejected(tmp_path):
    f = frames()
    p = save(tmp_path, "pages.tif", f[0], "TIFF", save_all=True, append_images=f[1:])
    with pytest.raises(ImageError, match="multi-page TIFF with 3 pages"):
        load_image(p)


def test_mpo_primary_image(tmp_path):
    f = frames()
    p = save(tmp_path, "stereo.jpg", f[0], "MPO", save_all=True, append_images=f[1:2])
    li = load_image(p)
    assert li.format == "MPO"
    assert np.abs(li.rgb[4, 4].astype(int) - (255, 0, 0)).max() <= 8


# --------------------------------------------------------------------------- orientation

def upright_marker() -> Image.Image:
    """40x20 upright picture: red block top-left, blue block bottom-right."""
    a = np.full((20, 40, 3), 255, np.uint8)
    a[:6, :6] = (255, 0, 0)
    a[-6:, -6:] = (0, 0, 255)
    return Image.fromarray(a)


# stored = upright.transpose(inverse of the orientation's fix-up)
_STORE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def stored_with_orientation(tmp_path, o, fmt="PNG", **kw):
    ex = Image.Exif()
    ex[0x0112] = o
    return save(tmp_path, f"o{o}.{fmt.lower()}", upright_marker().transpose(_STORE[o]), fmt, exif=ex.tobytes(), **kw)


def assert_upright(rgb, tol=0):
    assert rgb.shape == (20, 40, 3)
    assert np.abs(rgb[2, 2].astype(int) - (255, 0, 0)).max() <= tol
    assert np.abs(rgb[-3, -3].astype(int) - (0, 0, 255)).max() <= tol


@pytest.mark.parametrize("o", [3, 6, 8])
def test_exif_orientation_png(tmp_path, o):
    li = load_image(stored_with_orientation(tmp_path, o))
    assert li.orientation == o
    assert (li.width, li.height) == (40, 20)
    assert_upright(li.rgb)


@pytest.mark.parametrize("o", range(1, 9))
@pytest.mark.parametrize("band", [3, 4, 256])
def test_banded_upright_copy_is_pils_transpose(o, band):
    """load_image turns the photo upright band by band (_to_array): the same pixels as PIL's
    transpose of the whole image, for bands that divide the height and bands that do not."""
    a = np.random.default_rng(o).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    want = np.asarray(im.transpose(images._TRANSPOSE[o]) if o > 1 else im)
    assert np.array_equal(images._to_array(im, o, band=band), want)


@pytest.mark.parametrize("o", range(1, 9))
def test_upright_view_crops_and_copies_match_the_upright_array(o):
    """A scan reads photos through images.UprightView (crops and working copies cut from the
    stored pixels, then turned), never through the upright array: every orientation must give the
    array's pixels (images.ArrayView, the engine's view of an array), including crops that run off
    an edge."""
    stored = Image.fromarray(np.random.default_rng(o).integers(0, 256, (90, 130, 3), dtype=np.uint8))
    view = images.UprightView(stored, o)
    upright = view.array()
    assert view.shape == upright.shape == ((130, 90, 3) if o >= 5 else (90, 130, 3))
    h, w = upright.shape[:2]
    for t, r, b, l in [(0, w, h, 0), (5, 40, 33, 11), (-4, 20, 9, -7), (h - 6, w + 9, h + 5, w - 13), (10, 10, 30, 10)]:
        want = upright[max(0, t):b, max(0, l):r]
        assert np.array_equal(view.crop(t, r, b, l), want), (o, (t, r, b, l))
        assert np.array_equal(images.ArrayView(upright).crop(t, r, b, l), want), (o, (t, r, b, l))
    # Working copies: shrunk as stored, then turned. Pillow's two bilinear passes then run in the
    # other order for a turned image, so its pixels may differ by a grey level, no more.
    for size, block_average in [((w // 2, h // 2), True), ((w * 2 // 5, h * 2 // 5), True), ((w - 7, h - 5), False)]:
        want = images.ArrayView(upright).resized(size, block_average)
        got = view.resized(size, block_average)
        assert got.size == want.size == size
        diff = np.abs(np.asarray(got).astype(int) - np.asarray(want))
        assert diff.max() <= (0 if o == 1 else 1), (o, size, block_average)


def test_exif_orientation_jpeg(tmp_path):
    li = load_image(stored_with_orientation(tmp_path, 6, "JPEG", quality=95))
    assert (li.orientation, li.width, li.height) == (6, 40, 20)
    assert_upright(li.rgb, tol=40)


def test_heic_roundtrip_with_orientation(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    images._ensure_heif()
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("no HEIF encoder")
    try:
        p = stored_with_orientation(tmp_path, 6, "HEIF", quality=95)
    except Exception as e:  # pragma: no cover
        pytest.skip(f"HEIF encode failed: {e}")
    p = p.rename(tmp_path / "photo.heic")
    li = load_image(p)
    assert li.format == "HEIF"
    assert (li.orientation, li.width, li.height) == (6, 40, 20)
    assert_upright(li.rgb, tol=60)  # rotated exactly once


def test_avif_roundtrip_with_orientation(tmp_path):
    try:
        p = stored_with_orientation(tmp_path, 6, "AVIF", quality=95)
    except Exception as e:
        pytest.skip(f"AVIF encode unavailable: {e}")
    li = load_image(p)
    assert li.format == "AVIF"
    assert (li.width, li.height) == (40, 20)
    assert_upright(li.rgb, tol=60)


# --------------------------------------------------------------------------- reduction

def test_max_side_jpeg_uses_scale(tmp_path):
    p = save(tmp_path, "big.jpg", Image.new("RGB", (800, 600), (90, 90, 90)), "JPEG")
    li = load_image(p, max_side=200)
    assert li.rgb.shape == (150, 200, 3)
    assert (li.width, li.height) == (800, 600)
    assert li.scale == pytest.approx(0.25)
    assert load_image(p, max_side=1000).scale == 1.0


def test_max_side_with_rotation_png(tmp_path):
    # 40x20 upright stored as 20x40 with orientation 6.
    li = load_image(stored_with_orientation(tmp_path, 6), max_side=20)
    assert li.rgb.shape == (10, 20, 3)
    assert (li.width, li.height) == (40, 20)
    assert li.scale == pytest.approx(0.5)
    assert li.rgb[1, 1, 0] > 200 and li.rgb[1, 1, 2] < 80  # red corner still top-left


def test_max_side_real_photo():
    li = load_image(real("people/obama/obama3.jpg"), max_side=500)
    assert max(li.rgb.shape[:2]) == 500
    assert li.rgb.shape[1] / li.scale == pytest.approx(li.width, abs=2)


# --------------------------------------------------------------------------- sniffing / walking

def test_sniff_format():
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff_format(b"GIF89a") == "GIF"
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff_format(b"MM\x00*") == "TIFF"
    assert sniff_format(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "HEIF"
    assert sniff_format(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") == "AVIF"
    assert sniff_format(b"BM is also how this sentence starts") is None
    assert sniff_format(b"") is None
    assert sniff_format(b"hello") is None


def test_iter_image_files(tmp_path, monkeypatch):
    jpg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpg, "JPEG")
    root = tmp_path / "event"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".thumbs").mkdir()
    (root / "locked").mkdir()
    for rel in ["a.jpg", "sub/c.PNG", "sub/deeper/d.jpeg", ".thumbs/t.jpg", ".hidden.jpg", "locked/x.jpg"]:
        (root / rel).write_bytes(jpg.getvalue())
    (root / "noext").write_bytes(jpg.getvalue())
    (root / "b.txt").write_text("not a photo")
    (root / "README").write_text("no extension, not a photo")
    (root / "._a.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble metadata, not a photo
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "dangling.jpg").symlink_to(root / "gone.jpg")

    real_scandir = os.scandir

    def scandir(p):
        if Path(p).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(p)

    monkeypatch.setattr(images.os, "scandir", scandir)
    skipped, errors = [], []
    extra = tmp_path / "explicit.txt"
    extra.write_text("given explicitly")
    got = list(iter_image_files([root, extra], on_skip=lambda p, r: skipped.append((p.name, r)),
                                on_error=lambda p, r: errors.append((p, r))))
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "event/.hidden.jpg",  # a hidden photo is still screened: it could be published with the rest
        "event/a.jpg",
        "event/dangling.jpg",  # broken link with an image name: load_image reports it
        "event/noext",
        "event/sub/c.PNG",
        "event/sub/deeper/d.jpeg",
        "explicit.txt",
    ]
    reasons = dict(skipped)
    # Found but not listed: an error naming the path and the OS error, never a mere skip.
    assert "locked" not in reasons
    assert errors == [(root / "locked", f"cannot list folder {root / 'locked'}: Permission denied [EACCES]")]
    assert "hidden" in reasons[".thumbs"] and ".hidden.jpg" not in reasons and "._a.jpg" not in reasons
    assert "already visited" in reasons["loop"]
    with pytest.raises(ImageError):
        load_image(root / "dangling.jpg")
