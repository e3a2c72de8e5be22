"""Tiled detection ([detector] tile_rows, centerface_graph.STEM_OUTPUTS) finds exactly what the whole graph finds.

Real photos from ../shared/faces, alone and pasted on 12 MP canvases (skipped when ../shared is
absent); the banded resize is checked on synthetic photos of the usual camera shapes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocheck.centerface_graph import split_centerface
from photocheck.engine import FaceEngine
from photocheck.images import ArrayView, UprightView, load_image
from photocheck.model_files import quantized_centerface_path, split_centerface_paths
from photocheck.thresholds import ThresholdsError, load_thresholds
from tests.helpers import FACES

need_faces = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test photos not found at {FACES}")


@pytest.fixture(scope="module")
def engines() -> tuple[FaceEngine, FaceEngine]:
    st = load_thresholds().detector
    assert st.tile_rows and st.tile_margin, "models/thresholds.toml tiles the detector"
    whole = FaceEngine(dataclasses.replace(st, tile_rows=0, tile_margin=0), encoder=False)
    return whole, FaceEngine(st, encoder=False)


def assert_same(whole: FaceEngine, tiled: FaceEngine, rgb: np.ndarray) -> int:
    """The main pass's output maps bit-identical, and the same detections (both passes). Returns the
    face count."""
    h, w = rgb.shape[:2]
    px = np.asarray(ArrayView(rgb).resized(whole.work_size(w, h, min(whole.settings.long_side, 2 * max(h, w)))))
    for a, b in zip(whole._run_net(px), tiled._run_net(px), strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
    found = tiled.detect(rgb)
    assert found == whole.detect(rgb)
    return len(found)


@need_faces
def test_tiled_equals_whole_on_shared_photos(engines):
    whole, tiled = engines
    photos = sorted((FACES / "groups").glob("*")) + sorted((FACES / "edge").glob("*"))
    faces = sum(assert_same(whole, tiled, load_image(p).rgb) for p in photos if p.suffix in (".jpg", ".png"))
    assert faces >= 30


@need_faces
@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000)])
def test_tiled_equals_whole_on_camera_size_photo(engines, size):
    """The shared group photos pasted on a 12 MP canvas: the main pass is 1984x1472 (or 1472x1984),
    so its stem runs on several bands with faces across band edges."""
    whole, tiled = engines
    canvas = Image.new("RGB", size, (90, 110, 100))
    cw, ch = size[0] // 3, size[1] // 3
    photos = [p for p in sorted((FACES / "groups").glob("*")) if p.suffix in (".jpg", ".png")]
    for i, p in enumerate(photos[:9]):
        with Image.open(p) as im:
            im = im.convert("RGB")
            scale = min(cw / im.width, ch / im.height)
            im = im.resize((int(im.width * scale), int(im.height * scale)), Image.Resampling.BICUBIC)
            canvas.paste(im, ((i % 3) * cw, (i // 3) * ch))
    assert assert_same(whole, tiled, np.asarray(canvas)) >= 20


@need_faces
def test_tiled_equals_whole_int8_model():
    st = dataclasses.replace(load_thresholds().detector, quantized=True)
    whole = FaceEngine(dataclasses.replace(st, tile_rows=0, tile_margin=0), encoder=False)
    tiled = FaceEngine(st, encoder=False)
    assert assert_same(whole, tiled, load_image(FACES / "groups" / "obama_and_biden.jpg").rgb) == 3


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (6000, 4000), (4000, 6000), (4032, 3024),
                                  (3840, 2160), (2160, 3840), (1200, 900), (700, 2200), (500, 375),
                                  (1984, 1472), (1472, 1984)])  # the last two: the 640 px copy from the main one
def test_banded_resize_gives_pillows_pixels(size):
    """images.resize_rows averages k x k blocks (k = whole shrink factor >= 2) and runs Pillow's
    horizontal pass on bands; the pixels must be Pillow's own whole-image reduce + resize."""
    w, h = size
    rgb = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for side, block_average in [(1984, True), (2000, True), (640, True), (640, False)]:
        target = FaceEngine.work_size(w, h, min(side, 2 * max(w, h)))
        k = min(w // target[0], h // target[1])
        im = Image.fromarray(rgb)
        im = im.reduce(k) if k >= 2 and block_average else im
        want = np.asarray(im if im.size == target else im.resize(target, Image.Resampling.BILINEAR))
        for band in (None, 7, 100):  # bands that are not multiples of k are rounded down to one
            got = ArrayView(rgb).resized(target, block_average, band=band)
            assert np.array_equal(np.asarray(got), want), (size, target, band, block_average)
        # A scan's working copies come from the decoded PIL image (images.UprightView), not an array.
        got = UprightView(Image.fromarray(rgb)).resized(target, block_average)
        assert np.array_equal(np.asarray(got), want), (size, target, "UprightView", block_average)


@pytest.mark.parametrize("key,value", [("tile_rows", 100), ("tile_margin", 16), ("tile_rows", -32)])
def test_tile_settings_must_be_multiples_of_32(tmp_path: Path, key, value):
    src = Path(load_thresholds().source).read_text()
    line = next(x for x in src.splitlines() if x.startswith(f"{key} ="))
    p = tmp_path / "t.toml"
    p.write_text(src.replace(line, f"{key} = {value}"))
    with pytest.raises(ThresholdsError, match="multiples of 32"):
        load_thresholds(p)


def test_shipped_int8_parts_are_current():
    """models/centerface_int8_{stem,head}.onnx are centerface_int8.onnx cut as the engine cuts it
    (bench/split_centerface.py): byte for byte, with the source's sha256 recorded."""
    source = quantized_centerface_path().read_bytes()
    want = split_centerface(source, hashlib.sha256(source).hexdigest())
    got = tuple(p.read_bytes() for p in split_centerface_paths())
    assert got == want, "re-run bench/split_centerface.py"


def test_worker_engine_does_not_import_onnx():
    """A tiled int8 engine loads the shipped parts: the onnx package (12 MB) stays out of the
    scan worker. The check runs in a fresh interpreter, as a worker starts."""
    code = ("import sys; from photocheck.engine import FaceEngine; e = FaceEngine(encoder=False); "
            "assert e.settings.quantized and e.settings.tile_rows; print('onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stale_int8_parts_are_not_used(tmp_path, monkeypatch):
    """Parts cut from another model are ignored: the engine cuts the model it loads itself."""
    import photocheck.centerface_graph as centerface_graph
    import photocheck.model_files as model_files

    stem, head = (tmp_path / "stem.onnx", tmp_path / "head.onnx")
    for part, path in zip(split_centerface(quantized_centerface_path().read_bytes(), "0" * 64), (stem, head)):
        path.write_bytes(part)
    monkeypatch.setattr(model_files, "split_centerface_paths", lambda: (stem, head))
    calls = []
    real = centerface_graph.split_centerface
    monkeypatch.setattr(centerface_graph, "split_centerface", lambda *a: calls.append(1) or real(*a))
    FaceEngine(encoder=False)
    assert calls == [1]
