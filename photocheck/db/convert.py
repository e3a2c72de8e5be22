"""Stored rows read back as result objects: the one conversion the scan cache, resumed scans,
reports read from the database and the web review all use."""
from __future__ import annotations

import json

from photocheck.config import school_channels
from photocheck.db.models import Face, Photo, Scan
from photocheck.results import FaceResult, FaceStatus, PhotoResult, Verdict


def face_result(f: Face) -> FaceResult:
    return FaceResult(box=(f.top, f.right, f.bottom, f.left), status=FaceStatus(f.status),
                      detector_score=f.detector_score, student_id=f.student_id, candidate_id=f.candidate_id,
                      distance=f.distance, reason=f.reason, time_s=f.time_s)


def channel_verdicts(photo: Photo, scan: Scan | None) -> dict[str, str]:
    """The verdict per channel the photo was judged for.

    Photos stored before per-channel verdicts existed count as judged with the strictest
    verdict on every channel of their scan (`scan` None: only what is stored).
    """
    stored = json.loads(photo.channel_verdicts or "{}")
    if stored or scan is None:
        return stored
    channels = [scan.channel] if scan.channel else list(school_channels())
    return {ch: photo.verdict for ch in channels}


def photo_result(photo: Photo, *, scan: Scan | None = None, path: str | None = None, cached: bool = False,
                 signoff: str = "pending") -> PhotoResult:
    """`photo` (its faces loaded) as a PhotoResult, clips' kind/duration and faces' times included.

    `scan`: the photo's scan, to give photos stored before per-channel verdicts their scan's
    channels; `path`: another file with the same bytes (the scan cache); `cached`: reused."""
    return PhotoResult(
        path=path or photo.path, verdict=Verdict(photo.verdict), reasons=json.loads(photo.reasons or "[]"),
        faces=[face_result(f) for f in photo.faces], sha256=photo.sha256, width=photo.width, height=photo.height,
        error=photo.error, channel_verdicts={k: Verdict(v) for k, v in channel_verdicts(photo, scan).items()},
        photo_id=photo.id, signoff=signoff, phash=photo.phash, cached=cached, text_hits=photo.text_hits or 0,
        kind=photo.kind, duration_s=photo.duration_s)
