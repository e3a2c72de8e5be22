#!/usr/bin/env python3
"""The ONNX face encoder vs dlib's: same descriptors? how much faster? (a benchmark, not a test)

    .venv/bin/python bench/encoder_onnx.py verify     # every face of ../shared/faces + 10 event photos
    .venv/bin/python bench/encoder_onnx.py speed      # CPU ms per face, dlib vs onnxruntime (batch 1/4/16)
    .venv/bin/python bench/encoder_onnx.py verify --events /tmp/pc-speed/set/events/photos --events-n 60

Faces: CenterFace detections of photocheck's own engine; chips from its encode path
(FaceEngine.face_landmarks + dlib.get_face_chip(crop, shape, 150, 0.25)).

verify: for each face, dlib's compute_face_descriptor(crop, shape, 1) (what photocheck used before:
the reference), dlib on the chip alone (must be identical: the chip is the one dlib uses), and the
ONNX model (one run per photo, as FaceEngine.encode, and one run per face). Prints the largest
element difference and the largest change of the Euclidean distance between any two faces.

speed: CPU time (time.process_time: the process's user+sys over all its threads, so other load on
the machine matters less than for wall time), per face: the ResNet alone (dlib on the chip;
onnxruntime on one thread at batch 1, 4 and 16), landmarks and chip (dlib, both paths need them),
and the whole encode before/now; then per photo on --events-n event photos (encode stage only).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FACES = REPO.parent / "shared" / "faces"
EVENTS = Path("/tmp/pc-speed/set/events/photos")


def _images(events: Path, events_n: int) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png"}
    shared = sorted(p for p in FACES.rglob("*") if p.suffix.lower() in exts)
    ev = sorted(events.glob("*.jpg"))[:events_n] if events.is_dir() else []
    if events_n and not ev:
        print(f"(no event photos in {events}: make some with ../shared/tools/make_event_set.py)")
    return shared + ev


def _faces(engine, paths: list[Path]):
    """(path, [(crop, shape, chip)]) per photo."""
    from photocheck.images import load_image

    for p in paths:
        rgb = load_image(p).rgb
        faces = []
        for d in engine.detect(rgb):
            crop, shape = engine.face_landmarks(rgb, d)
            faces.append((crop, shape, engine._dlib.get_face_chip(crop, shape, 150, 0.25)))
        yield p, faces


def _dlib_rec():
    import dlib

    from photocheck.model_files import source_dat_path

    return dlib.face_recognition_model_v1(str(source_dat_path()))


def verify(a) -> int:
    from photocheck.engine import FaceEngine

    engine = FaceEngine()
    rec = _dlib_rec()
    ref, onnx_batch, onnx_single, names = [], [], [], []
    chip_same = True
    for p, faces in _faces(engine, _images(a.events, a.events_n)):
        if not faces:
            continue
        for crop, shape, chip in faces:
            d_full = np.asarray(rec.compute_face_descriptor(crop, shape, 1))
            d_chip = np.asarray(rec.compute_face_descriptor(chip))
            chip_same &= bool(np.array_equal(d_full, d_chip))
            ref.append(d_full)
            onnx_single.append(engine.encode_chips([chip])[0])
            names.append(p.name)
        onnx_batch.extend(engine.encode_chips([c for _, _, c in faces]))
    ref, ob, os_ = np.array(ref), np.array(onnx_batch), np.array(onnx_single)
    n_photos = len(set(names))
    print(f"{len(ref)} faces in {n_photos} photos")
    print(f"dlib on the chip == dlib on (crop, shape, 1): {chip_same}")
    diff = np.abs(ob - ref)
    worst = int(diff.max(axis=1).argmax())
    print(f"max |onnx - dlib| per element: batched per photo {diff.max():.3g} (face {names[worst]}), "
          f"one face per run {np.abs(os_ - ref).max():.3g}; batched vs single {np.abs(ob - os_).max():.3g}")
    print(f"mean |onnx - dlib| per element: {diff.mean():.3g}; descriptor norms {np.linalg.norm(ref, axis=1).min():.3f}"
          f"..{np.linalg.norm(ref, axis=1).max():.3f}")

    def dists(x):
        return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)

    dd = np.abs(dists(ob) - dists(ref))
    print(f"max |distance change| over all {len(ref) * (len(ref) - 1) // 2} face pairs: {dd.max():.3g}")
    return 0 if diff.max() <= 1e-4 and chip_same else 1


def _cpu_ms_per_face(fn, n_faces: int, min_seconds: float = 2.0) -> float:
    fn()                                        # warm-up
    t0, reps = time.process_time(), 0
    while True:
        fn()
        reps += 1
        dt = time.process_time() - t0
        if dt >= min_seconds:
            return 1000 * dt / (reps * n_faces)


def speed(a) -> int:
    import onnxruntime as ort

    from photocheck.engine import FaceEngine
    from photocheck.images import load_image

    engine = FaceEngine()
    rec = _dlib_rec()
    paths = sorted(p for p in (FACES / "people").rglob("*") if p.suffix.lower() in {".jpg", ".png"})
    photos = [(rgb, engine.detect(rgb)) for rgb in (load_image(p).rgb for p in paths)]
    n_faces = sum(len(d) for _, d in photos)
    faces = [engine.face_landmarks(rgb, d) for rgb, dets in photos for d in dets]
    chips = [engine._dlib.get_face_chip(c, s, 150, 0.25) for c, s in faces]
    print(f"{n_faces} faces in {len(photos)} photos of ../shared/faces/people; onnxruntime {ort.__version__}, "
          "intra_op_num_threads=1; CPU ms per face:")
    rows = [("ResNet: dlib compute_face_descriptor(chip)",
             _cpu_ms_per_face(lambda: [rec.compute_face_descriptor(c) for c in chips], len(chips)))]
    for b in (1, 4, 16):
        groups = [chips[i:i + b] for i in range(0, len(chips), b)]
        rows.append((f"ResNet: onnxruntime, batch {b}",
                     _cpu_ms_per_face(lambda: [engine.encode_chips(g) for g in groups], len(chips))))
    rows.append(("landmarks (dlib 5-point, crop, upscale)",
                 _cpu_ms_per_face(lambda: [engine.face_landmarks(rgb, d) for rgb, dets in photos for d in dets],
                                  n_faces)))
    rows.append(("chip (dlib.get_face_chip)",
                 _cpu_ms_per_face(lambda: [engine._dlib.get_face_chip(c, s, 150, 0.25) for c, s in faces], n_faces)))
    rows.append(("encode before: landmarks + dlib compute_face_descriptor",
                 _cpu_ms_per_face(lambda: [rec.compute_face_descriptor(*engine.face_landmarks(rgb, d), 1)
                                           for rgb, dets in photos for d in dets], n_faces)))
    rows.append(("encode now: FaceEngine.encode(rgb, detections)",
                 _cpu_ms_per_face(lambda: [engine.encode(rgb, dets) for rgb, dets in photos], n_faces)))
    for name, ms in rows:
        print(f"  {name:56s} {ms:7.2f}")

    ev = sorted(a.events.glob("*.jpg"))[:a.events_n] if a.events.is_dir() else []
    if ev:
        photos = [(rgb, engine.detect(rgb)) for rgb in (load_image(p).rgb for p in ev)]
        n = sum(len(d) for _, d in photos)
        print(f"{len(ev)} event photos of {a.events} ({n / len(ev):.1f} faces/photo); CPU ms per photo:")

        def per_photo(fn):
            return _cpu_ms_per_face(fn, len(photos), min_seconds=5.0)

        before = per_photo(lambda: [rec.compute_face_descriptor(*engine.face_landmarks(rgb, d), 1)
                                    for rgb, dets in photos for d in dets])
        now = per_photo(lambda: [engine.encode(rgb, dets) for rgb, dets in photos])
        print(f"  {'encode before (landmarks + dlib)':56s} {before:7.1f}  ({before * len(photos) / n:.1f}/face)")
        print(f"  {'encode now (FaceEngine.encode, one run per photo)':56s} {now:7.1f}  ({now * len(photos) / n:.1f}/face)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["verify", "speed"])
    ap.add_argument("--events", type=Path, default=EVENTS, help="folder of event photos (*.jpg)")
    ap.add_argument("--events-n", type=int, default=10, help="how many event photos to verify on")
    a = ap.parse_args(argv)
    if not FACES.is_dir():
        raise SystemExit(f"{FACES} not found")
    return verify(a) if a.what == "verify" else speed(a)


if __name__ == "__main__":
    sys.exit(main())
