"""Tiled detection ([detector] tile_rows, engine._CUTS) finds exactly what the whole graph finds.

Real photos from ../shared/faces, alone and pasted on 12 MP canvases (skipped when ../shared is
absent); the banded resize is checked on synthetic photos of the usual camera shapes.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocheck.engine import FaceEngine
from photocheck.images import load_image
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
    px = np.asarray(whole.resize(rgb, whole.work_size(w, h, min(whole.settings.long_side, 2 * max(h, w)))))
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
    """The shared group photos pasted on a 12 MP canvas: the main pass is 1600x1216 (or 1216x1600),
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
                                  (1600, 1216), (1216, 1600)])  # the last two: the 640 px copy from the 1600 px one
def test_banded_resize_gives_pillows_pixels(size):
    """engine.resize runs Pillow's horizontal pass on bands; the pixels must be Pillow's own."""
    w, h = size
    rgb = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for side in (1600, 640):
        target = FaceEngine.work_size(w, h, min(side, 2 * max(w, h)))
        want = np.asarray(Image.fromarray(rgb).resize(target, Image.Resampling.BILINEAR))
        assert np.array_equal(np.asarray(FaceEngine.resize(rgb, target)), want), (size, target)


@pytest.mark.parametrize("key,value", [("tile_rows", 100), ("tile_margin", 16), ("tile_rows", -32)])
def test_tile_settings_must_be_multiples_of_32(tmp_path: Path, key, value):
    src = Path(load_thresholds().source).read_text()
    line = next(x for x in src.splitlines() if x.startswith(f"{key} ="))
    p = tmp_path / "t.toml"
    p.write_text(src.replace(line, f"{key} = {value}"))
    with pytest.raises(ThresholdsError, match="multiples of 32"):
        load_thresholds(p)
