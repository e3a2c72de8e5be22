"""Matching faces against listed students, and the verdict rules. No I/O here.

Per face (see models/thresholds.toml for the numbers):
  nearest listed student within block_distance            -> LISTED   (photo blocked)
  within review_distance, or too small/blurred/dark to rule out -> UNCERTAIN / TOO_SMALL (review)
  a face narrower than small_face_px, or only just past the blur gate (under soft_weak_sharpness),
    within review_distance_small                          -> TOO_SMALL (review)
  otherwise, while some listed student has no reference   -> UNPROTECTED (review)
  otherwise                                               -> NO_MATCH
Per photo the worst face wins: blocked > review > clear. "clear" never means approved: every
photo still waits for a second person's sign-off.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Sequence

import numpy as np

from photocheck.results import Box, FaceResult, FaceStatus, Verdict


def listed_for(opt_out: str, until: date | None, strict: bool, channel: str | None, today: date) -> bool:
    """Does this student's opt-out apply to `channel` (None = any channel, the strictest reading)?

    A strict student (e.g. protection order) is listed everywhere, always. Otherwise an opt-out
    whose end date has passed no longer applies, and one naming channels applies to those only.
    """
    if strict:
        return True
    if until is not None and until < today:
        return False
    channels = {c for c in opt_out.split(";") if c}
    if not channels:  # an empty stored value must never mean "consented"
        channels = {"all"}
    return channel is None or "all" in channels or channel in channels


@dataclass
class ReferenceSet:
    """Listed students' reference encodings, stacked for fast distance computation."""

    student_ids: list[str] = field(default_factory=list)  # one per row of `vectors`
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 128)))
    unprotected: list[str] = field(default_factory=list)  # listed, but no usable reference

    @classmethod
    def build(cls, encodings: dict[str, list[np.ndarray]], listed: Sequence[str]) -> "ReferenceSet":
        ids: list[str] = []
        rows: list[np.ndarray] = []
        for sid in listed:
            for vec in encodings.get(sid, []):
                ids.append(sid)
                rows.append(np.asarray(vec, dtype=np.float64))
        vectors = np.vstack(rows) if rows else np.zeros((0, 128))
        unprotected = sorted(sid for sid in listed if not encodings.get(sid))
        return cls(student_ids=ids, vectors=vectors, unprotected=unprotected)

    def nearest(self, encoding: np.ndarray) -> tuple[str | None, float | None]:
        """The closest listed student and the distance to their closest reference."""
        if not len(self.student_ids):
            return None, None
        dists = np.linalg.norm(self.vectors - encoding, axis=1)
        i = int(np.argmin(dists))
        return self.student_ids[i], float(dists[i])


def quality_problem(width: int, sharpness: float, quality, rules) -> str | None:
    """Why a face's capture quality cannot support "not a listed student", in a reviewer's words;
    None when it can. `quality` is the engine's FaceQuality (None: sharpness alone is known).
    A face that passes may still be ruled out only beyond review_distance_small: needs_margin()."""
    if width < rules.min_face_px:
        return f"face {width} px wide is too small to rule out (< {rules.min_face_px} px)"
    if quality is not None and quality.brightness < rules.min_brightness:
        return f"face too dark to rule out (brightness {quality.brightness:.0f} < {rules.min_brightness:g})"
    if quality is not None and quality.contrast < rules.min_contrast:
        return f"face too dark or washed out to rule out (contrast {quality.contrast:.0f} < {rules.min_contrast:g})"
    if sharpness < rules.min_sharpness:
        return f"face too blurred to rule out (sharpness {sharpness:.0f} < {rules.min_sharpness:g})"
    weak = None if quality is None else quality.weak_sharpness
    if weak is not None and weak < rules.min_weak_sharpness:
        return (f"face too blurred (motion or shake) to rule out (sharpness along its weakest direction "
                f"{weak:.1f} < {rules.min_weak_sharpness:g})")
    if width < rules.small_face_px and (sharpness < rules.small_min_sharpness or weak is None):
        return f"face {width} px wide is too small to rule out unless perfectly sharp"
    return None


def needs_margin(width: int, quality, rules) -> str | None:
    """Why a face that passed every gate is still ruled out only beyond [match] review_distance_small
    (it may be ruled out with less certainty than a big sharp face), in words; None when not."""
    if width < rules.small_face_px:
        return f"face {width} px wide is too small"
    if quality is not None and quality.weak_sharpness < rules.soft_weak_sharpness:
        return f"face slightly blurred (motion or shake: {quality.weak_sharpness:.1f} along its weakest direction) is too soft"
    return None


def classify_face(
    box: Box,
    encoding: np.ndarray | None,
    sharpness: float,
    references: ReferenceSet,
    thresholds,
    detector_score: float = 0.0,
    quality=None,
) -> FaceResult:
    """Decide one face. `encoding` is None when the face could not be encoded; `quality` is the
    detection's FaceQuality (engine.face_quality), None when only `sharpness` is known."""
    match = thresholds.match
    width = box[1] - box[3]
    candidate, distance = (None, None) if encoding is None else references.nearest(encoding)

    def result(status: FaceStatus, reason: str, student_id: str | None = None) -> FaceResult:
        return FaceResult(box=box, status=status, detector_score=detector_score, student_id=student_id,
                          candidate_id=candidate, distance=distance, reason=reason)

    # A confident match blocks even on a small or soft face: blocking errs on the safe side.
    if distance is not None and distance <= match.block_distance:
        return result(FaceStatus.LISTED, f"matches listed student {candidate} (distance {distance:.3f})", candidate)
    if encoding is None:
        return result(FaceStatus.TOO_SMALL, "face could not be encoded; cannot rule out a listed student")
    # A face is only ruled out when it could have been recognised.
    problem = quality_problem(width, sharpness, quality, thresholds.quality)
    if problem:
        return result(FaceStatus.TOO_SMALL, problem)
    if distance is not None and distance <= match.review_distance:
        return result(FaceStatus.UNCERTAIN, f"could be listed student {candidate} (distance {distance:.3f})")
    margin = needs_margin(width, quality, thresholds.quality)
    if margin and distance is not None and distance <= match.review_distance_small:
        return result(FaceStatus.TOO_SMALL, f"{margin} to rule out listed student {candidate} (distance {distance:.3f})")
    if references.unprotected:
        return result(FaceStatus.UNPROTECTED,
                      f"{len(references.unprotected)} listed student(s) have no usable reference photo")
    return result(FaceStatus.NO_MATCH, "no listed student within range")


def photo_problem(brightness: float | None, thresholds) -> str | None:
    """Why a whole photo cannot be cleared whatever its faces say (None: it can): in a very dark
    photo the detector misses small faces, so "no listed student found" cannot be trusted."""
    rules = thresholds.quality
    if brightness is not None and brightness < rules.min_photo_brightness:
        return (f"photo too dark to be sure every face was found (brightness {brightness:.0f} "
                f"< {rules.min_photo_brightness:g})")
    return None


def photo_verdict(faces: Sequence[FaceResult], problem: str | None = None) -> tuple[Verdict, list[str]]:
    """The photo's verdict and the reasons a reviewer reads. `problem` (photo_problem()): the
    photo goes to review at least."""
    listed = sorted({f.student_id for f in faces if f.status is FaceStatus.LISTED and f.student_id})
    n = {s: sum(f.status is s for f in faces) for s in FaceStatus}
    reasons: list[str] = []
    if listed:
        reasons.append("listed student(s) identified: " + ", ".join(listed))
    if n[FaceStatus.UNCERTAIN]:
        reasons.append(f"{n[FaceStatus.UNCERTAIN]} face(s) could be a listed student")
    if n[FaceStatus.TOO_SMALL]:
        kinds = sorted({m.group(0) for f in faces if f.status is FaceStatus.TOO_SMALL
                        for m in [re.search(r"too \w+|could not be encoded", f.reason)] if m})
        reasons.append(f"{n[FaceStatus.TOO_SMALL]} face(s) cannot be ruled out: {', '.join(kinds) or 'poor quality'}")
    if n[FaceStatus.UNPROTECTED]:
        reasons.append("some listed students have no usable reference photo, so no face can be ruled out")
    if problem:
        reasons.append(problem)
    if listed:
        return Verdict.BLOCKED, reasons
    if n[FaceStatus.UNCERTAIN] or n[FaceStatus.TOO_SMALL] or n[FaceStatus.UNPROTECTED] or problem:
        return Verdict.REVIEW, reasons
    if not faces:
        return Verdict.CLEAR, ["no faces found"]
    return Verdict.CLEAR, [f"{len(faces)} face(s) checked, none is a listed student"]
