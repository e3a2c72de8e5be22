"""The ONNX face encoder (models/dlib_face_recognition_resnet_model_v1.onnx) gives dlib's descriptors.

Real faces from ../shared/faces (skipped cleanly when absent): the engine's descriptors (onnxruntime)
against dlib's own compute_face_descriptor on the same landmarks. bench/encoder_onnx.py measures the
same on every shared face and event photos (max element difference ~5e-7)."""
from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest

import photocheck.model_files as model_files
from photocheck.engine import FaceEngine
from photocheck.model_files import EncoderModelError, encoder_onnx_path, model_info
from tests.helpers import FACES
from tests.helpers import load_face as load

pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test photos not found at {FACES}")

TOLERANCE = 1e-4    # max abs difference per descriptor element (measured: < 1e-6)
PHOTOS = ["people/obama/obama1.jpg", "people/biden/biden2.jpg", "people/kit_harington/kit1.jpg",
          "people/rose_leslie/rose1.jpg", "people/alex_lacamoire/alex3.png",
          "people/lin_manuel_miranda/lin1.png", "groups/obama_and_biden.jpg", "groups/kit_with_rose.jpg",
          "groups/2008_002079.jpg", "edge/obama_partial_face.jpg"]


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine()


@pytest.fixture(scope="module")
def dlib_rec():
    import dlib

    return dlib.face_recognition_model_v1(str(model_files.source_dat_path()))


@pytest.fixture(scope="module")
def photos(engine):
    """(name, rgb, detections) for each of PHOTOS."""
    out = []
    for rel in PHOTOS:
        rgb = load(rel)
        out.append((rel, rgb, engine.detect(rgb)))
    assert sum(len(d) for _, _, d in out) >= 15
    return out


def test_onnx_descriptors_equal_dlibs(engine, dlib_rec, photos):
    diffs = []
    for rel, rgb, dets in photos:
        got = engine.encode(rgb, dets)          # one onnxruntime run for the whole photo
        assert len(got) == len(dets)
        for d, vec in zip(dets, got):
            crop, shape = engine.face_landmarks(rgb, d)
            want = np.asarray(dlib_rec.compute_face_descriptor(crop, shape, 1))
            # The chip the engine feeds the net is the one dlib's own call uses.
            chip = engine.face_chip(rgb, d)
            assert np.array_equal(np.asarray(dlib_rec.compute_face_descriptor(chip)), want), rel
            assert vec.shape == (128,) and vec.dtype == np.float64
            diffs.append(float(np.abs(vec - want).max()))
    assert max(diffs) <= TOLERANCE, max(diffs)


def test_distances_unchanged(engine, dlib_rec, photos):
    """What screening uses: distances between faces agree as closely as the descriptors."""
    ours, theirs = [], []
    for _, rgb, dets in photos:
        ours += engine.encode(rgb, dets)
        for d in dets:
            theirs.append(np.asarray(dlib_rec.compute_face_descriptor(*engine.face_landmarks(rgb, d), 1)))
    ours, theirs = np.array(ours), np.array(theirs)

    def dists(x):
        return np.linalg.norm(x[:, None] - x[None], axis=2)

    assert np.abs(dists(ours) - dists(theirs)).max() <= TOLERANCE


def test_batch_crops_and_single_agree(engine, photos):
    _, rgb, dets = next(p for p in photos if p[0] == "groups/2008_002079.jpg")
    assert len(dets) >= 4
    batch = engine.encode(rgb, dets)
    single = [engine.encode(rgb, [d])[0] for d in dets]
    crops = engine.encode_crops(engine.encoding_crops(rgb, dets))
    assert np.abs(np.array(batch) - np.array(single)).max() <= 1e-6
    assert np.abs(np.array(batch) - np.array(crops)).max() <= 1e-6
    assert engine.encode(rgb, []) == [] and engine.encode_crops([]) == []


def test_encode_from_several_threads(engine, photos):
    want = [engine.encode(rgb, dets) for _, rgb, dets in photos]
    got: dict[int, list] = {}
    errors = []

    def work(k: int) -> None:
        try:
            for _ in range(2):
                got[k] = [engine.encode(rgb, dets) for _, rgb, dets in photos]
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        for a, b in zip(want, got[k]):
            assert np.array_equal(np.array(a), np.array(b))


def test_model_info_names_onnx_runtime_and_file():
    enc = model_info()["encoder"]
    assert enc["runtime"].startswith("onnxruntime ")
    assert enc["onnx_file"] == "dlib_face_recognition_resnet_model_v1.onnx"
    assert enc["onnx_sha256"] == hashlib.sha256(encoder_onnx_path().read_bytes()).hexdigest()
    # Same descriptors within tolerance: the version (weights + landmark model) is unchanged.
    assert enc["version"] == enc["sha256"][:12] + "+" + enc["landmarks_sha256"][:12]


def test_onnx_records_its_source_dat():
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(encoder_onnx_path()), load_external_data=False).metadata_props}
    dat = model_files.source_dat_path()
    assert meta["dlib_dat_sha256"] == hashlib.sha256(dat.read_bytes()).hexdigest() == model_files.ENCODER_DAT_SHA256


def test_engine_refuses_onnx_from_another_dat(monkeypatch):
    """An .onnx converted from another .dat than the recorded one must not load."""
    monkeypatch.setattr(model_files, "ENCODER_DAT_SHA256", "0" * 64)  # "recorded .dat" = another file
    with pytest.raises(EncoderModelError, match="regenerate it with bench/convert_dlib_resnet.py"):
        FaceEngine(detector=False)
