"""The per-face rules of photocheck.screening with the shipped thresholds (models/thresholds.toml)."""
from __future__ import annotations

import numpy as np
import pytest

from photocheck.engine import FaceQuality
from photocheck.results import FaceStatus
from photocheck.screening import ReferenceSet, classify_face
from photocheck.thresholds import load_thresholds

TH = load_thresholds()
Q, M = TH.quality, TH.match
REF = np.zeros(128)
REFS = ReferenceSet.build({"S1": [REF]}, ["S1"])


def quality(sharpness=400.0, weak=40.0, brightness=120.0, contrast=50.0) -> FaceQuality:
    return FaceQuality(sharpness=sharpness, weak_sharpness=weak, brightness=brightness, contrast=contrast)


def face(width: int, distance: float, q: FaceQuality | None = None):
    q = q or quality()
    enc = REF.copy()
    enc[0] = distance  # exactly `distance` from the one reference
    return classify_face((100, 100 + width, 100 + width, 100), enc, q.sharpness, REFS, TH, quality=q)


BETWEEN = (M.review_distance + M.review_distance_small) / 2  # ruled out for a full-size face only
SMALL = (Q.min_face_px + Q.small_face_px) // 2


def test_small_faces_get_stricter_gates():
    assert Q.min_face_px < Q.small_face_px and M.review_distance < M.review_distance_small
    assert Q.small_min_sharpness > Q.min_sharpness


def test_sharp_small_face_far_from_every_listed_student_is_ruled_out():
    assert face(SMALL, M.review_distance_small + 0.05).status is FaceStatus.NO_MATCH


def test_small_face_is_ruled_out_only_when_clearly_far():
    f = face(SMALL, BETWEEN)
    assert f.status is FaceStatus.TOO_SMALL
    assert f.reason == f"face {SMALL} px wide is too small to rule out listed student S1 (distance {BETWEEN:.3f})"
    assert face(Q.small_face_px, BETWEEN).status is FaceStatus.NO_MATCH  # the same distance at full size


def test_small_face_not_perfectly_sharp_is_never_ruled_out():
    q = quality(sharpness=Q.small_min_sharpness - 1)
    f = face(SMALL, 1.2, q)
    assert f.status is FaceStatus.TOO_SMALL and "too small to rule out" in f.reason
    assert face(Q.small_face_px, 1.2, q).status is FaceStatus.NO_MATCH  # fine at full size


@pytest.mark.parametrize("width,q,words", [(Q.min_face_px - 1, None, "too small"),
                                           (80, quality(weak=Q.min_weak_sharpness - 0.5), "too blurred"),
                                           (80, quality(brightness=Q.min_brightness - 1), "too dark")])
def test_below_a_floor_a_face_always_goes_to_review(width, q, words):
    f = face(width, 1.2, q)
    assert f.status is FaceStatus.TOO_SMALL and words in f.reason


def test_small_face_close_to_a_listed_student_is_still_blocked():
    assert face(Q.min_face_px - 1, M.block_distance - 0.01).status is FaceStatus.LISTED


def test_face_only_just_past_the_blur_gate_needs_the_small_face_margin():
    """A face whose weakest-direction sharpness only just passes min_weak_sharpness (motion blur) is
    ruled out only beyond review_distance_small, as a small face is; a crisper one from review_distance."""
    assert Q.min_weak_sharpness < Q.soft_weak_sharpness
    soft = quality(weak=(Q.min_weak_sharpness + Q.soft_weak_sharpness) / 2)
    crisp = quality(weak=Q.soft_weak_sharpness + 1)
    result = face(80, BETWEEN, soft)
    assert result.status is FaceStatus.TOO_SMALL
    assert "slightly blurred" in result.reason and "S1" in result.reason
    assert face(80, M.review_distance_small + 0.05, soft).status is FaceStatus.NO_MATCH
    assert face(80, BETWEEN, crisp).status is FaceStatus.NO_MATCH
    assert face(80, M.block_distance - 0.05, soft).status is FaceStatus.LISTED
