"""JSON report: the machine-readable record of a scan.

Its `images` list follows the contract read by ../shared/tools/score_scan.py
(path, verdict, faces[box, student_id]); everything else is extra for people and tools.
"""
from __future__ import annotations

import json
import math
import os
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from photocheck.reports._atomic import atomic_open
from photocheck.results import FaceResult, PhotoResult, ScanSummary

SIGN_OFF_NOTE = (
    "No photo is approved by this report. Every photo, including those marked clear, "
    "still needs a second person's sign-off before it is published."
)

# Face encodings are 128 floats (dlib). No result object carries one, but `thresholds` and
# `model` are free-form dicts, so a long all-number list anywhere is refused rather than written.
_MAX_NUMBER_LIST = 64


def photocheck_version() -> str:
    try:
        return metadata.version("photocheck")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _num(x: float | None, ndigits: int = 4) -> float | None:
    # NaN/inf are not JSON; None says "no value" honestly.
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), ndigits)


def _face_dict(face: FaceResult) -> dict[str, Any]:
    d = {
        "box": [int(v) for v in face.box],
        "student_id": face.student_id,
        "status": str(face.status),
        "candidate_id": face.candidate_id,
        "distance": _num(face.distance),
        "reason": face.reason,
        "detector_score": _num(face.detector_score),
    }
    if face.time_s is not None:  # clips: seconds from the start of the frame the box is in
        d["time_s"] = _num(face.time_s, 3)
    return d


def _photo_dict(photo: PhotoResult) -> dict[str, Any]:
    d = {
        "path": str(photo.path),
        "kind": photo.kind,  # "photo" or "video" (then also duration_s, and time_s on each face)
        "verdict": str(photo.verdict),
        "reasons": list(photo.reasons),
        "faces": [_face_dict(f) for f in photo.faces],
        "sha256": photo.sha256,
        "width": photo.width,
        "height": photo.height,
        "error": photo.error,
        # The verdict per publication channel (an opt-out may name only some channels); "verdict"
        # above is the strictest of them.
        "channel_verdicts": {ch: str(v) for ch, v in photo.channel_verdicts.items()},
        # Burst/near-duplicate group (reports only): every photo keeps its own verdict above;
        # group_verdict is the worst verdict in its group.
        "group": photo.group,
        "group_size": photo.group_size,
        "group_verdict": str(photo.group_verdict) if photo.group_verdict else None,
        "cached": photo.cached,
    }
    if photo.kind == "video":
        d["duration_s"] = _num(photo.duration_s, 3)
    return d


def to_json_dict(summary: ScanSummary) -> dict[str, Any]:
    """The report as plain JSON-ready data. Raises ValueError if it would carry an encoding."""
    data = {
        "photocheck": {"version": photocheck_version()},
        "note": SIGN_OFF_NOTE,
        "scan": {
            "id": summary.scan_id,
            "started_at": summary.started_at,
            "finished_at": summary.finished_at,
            "owner": summary.owner,
            "roots": [str(r) for r in summary.roots],
        },
        "thresholds": _plain(summary.thresholds),
        "model": _plain(summary.model),
        "roster": {
            "listed_students": summary.listed_students,
            "unprotected_students": list(summary.unprotected_students),
        },
        "counts": summary.counts(),
        "images": [_photo_dict(p) for p in summary.photos],
    }
    _refuse_encodings(data)
    return data


def write_json(summary: ScanSummary, path: str | os.PathLike) -> Path:
    """Write the JSON report atomically; returns the path written."""
    data = to_json_dict(summary)
    # ensure_ascii keeps the file pure ASCII, so it reads the same under any locale encoding
    # (score_scan.py uses Path.read_text() without an encoding; on Windows that is cp1252).
    text = json.dumps(data, indent=2, ensure_ascii=True, allow_nan=False)
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.write("\n")
    return Path(path)


def _plain(value: Any) -> Any:
    """Copy free-form config (thresholds/model) into JSON types: enums/paths become strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):  # numpy scalar/array: as numbers, so the encoding guard sees arrays
        return _plain(value.tolist())
    return str(value)  # Path, datetime …: readable, never a crash mid-report


def _refuse_encodings(value: Any, where: str = "$") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_encodings(v, f"{where}.{k}")
    elif isinstance(value, list):
        numbers = sum(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if numbers > _MAX_NUMBER_LIST:
            raise ValueError(f"refusing to write a report with a {numbers}-number list at {where} "
                             "(looks like a face encoding)")
        for i, v in enumerate(value):
            _refuse_encodings(v, f"{where}[{i}]")
