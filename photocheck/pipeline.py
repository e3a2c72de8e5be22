"""Screening one photo: decode -> detect -> encode -> judge.

The scan's worker processes (worker.py) run these stages in threads, a scan with one job and
`recheck`/`redact` call screen_photo, and clips (video.py) judge their frames with the same
detect_decoded/judge_photo, so every face is judged by the same rules. Imports only what
screening needs (numpy, PIL, onnxruntime, dlib), never SQLAlchemy, typer or rich.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from photocheck.groups import dhash
from photocheck.images import ImageError, load_image
from photocheck.mediafiles import os_error_text
from photocheck.results import PhotoResult, Verdict
from photocheck.screening import ReferenceSet, classify_face, photo_problem, photo_verdict


@dataclass
class Detected:
    """A photo after decoding and detection: all that encoding and judging need (small: the
    faces' padded crops, not the photo). `error` set = the photo is already an error result."""
    path: str
    error: PhotoResult | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    phash: str | None = None
    detections: list = field(default_factory=list)
    crops: list = field(default_factory=list)  # one (padded crop, detection in crop pixels) per face
    brightness: float | None = None  # mean grey level of the photo (main detection pass's copy), 0..255


def error_result(path, channels, reason: str, **kw) -> PhotoResult:
    """An `error` photo (never "no faces"), with an error verdict on every channel judged."""
    return PhotoResult(path=str(path), verdict=Verdict.ERROR, reasons=[reason], error=reason,
                       channel_verdicts={ch: Verdict.ERROR for ch in channels}, **kw)


def decode_photo(path: Path, channels: list[str]):
    """(LoadedImage, None) or (None, an `error` result). Never raises."""
    try:
        return load_image(path), None
    except ImageError as exc:
        return None, error_result(path, channels, str(exc))
    except OSError as exc:
        return None, error_result(path, channels, f"cannot read file {os_error_text(path, exc)}")
    except Exception as exc:  # a decoder bug must not turn into "no faces"
        return None, error_result(path, channels, f"cannot decode image: {type(exc).__name__}: {exc}")


def detect_decoded(path: Path, img, engine, channels: list[str], inputs=None) -> Detected:
    """Detect the faces of a decoded photo and cut their crops. Never raises.
    `inputs`: engine.pass_inputs(img.view), if already made. Reads the photo only through
    img.view: its upright array is never made."""
    try:
        if inputs is None:
            inputs = engine.pass_inputs(img.view)
        detections = engine.detect(img.view, inputs)
        # Keep only what encoding reads (a padded crop per face), not the whole photo (48 MB for 12 MP).
        crops = engine.encoding_crops(img.view, detections)
    except Exception as exc:
        reason = f"face detection failed: {type(exc).__name__}: {exc}"
        return Detected(str(path), error_result(path, channels, reason, sha256=img.sha256, width=img.width,
                                                height=img.height))
    try:
        phash = dhash(inputs[0])  # the main pass's copy: plenty for a 9x8 hash
    except Exception:  # grouping is a convenience: never let it cost a verdict
        phash = None
    # A luminance-weighted mean would differ by a few levels; the plain mean is what was calibrated.
    brightness = float(inputs[0].mean(dtype="float64"))
    return Detected(str(path), None, img.sha256, img.width, img.height, phash, detections, crops, brightness)


def detect_photo(path: Path, engine, channels: list[str]) -> Detected:
    """Decode and detect one photo. Never raises: failures become an `error` result."""
    img, error = decode_photo(path, channels)
    if error is not None:
        return Detected(str(path), error)
    return detect_decoded(path, img, engine, channels)


def judge_photo(det: Detected, engine, references: ReferenceSet, thresholds,
                channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Encode a detected photo's faces and judge them. Never raises: failures become `error`."""
    if det.error is not None:
        return det.error
    channels = list(channel_refs or {})
    try:
        encodings = engine.encode_crops(det.crops)

        def judge(refs: ReferenceSet):
            return [classify_face(tuple(int(v) for v in d.box), enc, d.sharpness, refs, thresholds,
                                  detector_score=float(d.score), quality=d.quality)
                    for d, enc in zip(det.detections, encodings)]

        faces = judge(references)
        problem = photo_problem(det.brightness, thresholds)
        per_channel = {ch: photo_verdict(judge(refs), problem)[0] for ch, refs in (channel_refs or {}).items()}
    except Exception as exc:
        return error_result(det.path, channels, f"face detection failed: {type(exc).__name__}: {exc}",
                            sha256=det.sha256, width=det.width, height=det.height)
    verdict, reasons = photo_verdict(faces, problem)
    return PhotoResult(path=det.path, verdict=verdict, reasons=reasons, faces=faces, sha256=det.sha256,
                       width=det.width, height=det.height, channel_verdicts=per_channel, phash=det.phash)


def screen_photo(path: Path, engine, references: ReferenceSet, thresholds,
                 channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Load, detect, encode and judge one photo. Never raises: failures become `error`.

    The verdict and faces are judged against `references`; each of `channel_refs` (the students
    listed for that channel) gives a per-channel verdict from the same encodings.
    """
    from photocheck.worker import release_memory  # (the worker module imports this one)

    det = detect_photo(path, engine, list(channel_refs or {}))
    release_memory()  # hand the decoder's and detector's buffers back before encoding
    return judge_photo(det, engine, references, thresholds, channel_refs)
