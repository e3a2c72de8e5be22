"""End to end on composed event sets of real faces: the CLI as a user runs it, scored by
../shared/tools/score_scan.py. These are the accuracy promises of README.md and docs/benchmarks.md."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Cli, make_event_set, scan_event_set

pytestmark = pytest.mark.slow

# (seed, photos, face sizes): the easy seed-3 set, and a small-face set on a seed never used for calibration.
SETS = [(3, 12, None), (21, 12, "40:300")]


@pytest.fixture(scope="module", params=SETS, ids=lambda s: f"seed{s[0]}-{s[2] or 'default'}")
def scanned_set(request, tmp_path_factory):
    seed, photos, face_px = request.param
    return scan_event_set(tmp_path_factory.mktemp(f"set{seed}"), photos=photos, seed=seed, face_px=face_px)


def test_no_listed_student_is_missed(scanned_set):
    _, _, fig = scanned_set
    assert fig["missed"] == "0", fig["_output"]
    assert fig["errors"] == "0" and fig["absent"] == "0", fig["_output"]


def test_listed_faces_identified_and_nobody_else_named(scanned_set):
    _, _, fig = scanned_set
    got, total = (int(v) for v in fig["identified"].split("/"))
    assert got >= 0.95 * total, fig["_output"]
    assert fig["wrong_id"] == "0", fig["_output"]


def test_false_blocks_and_review_load_within_bounds(scanned_set):
    _, _, fig = scanned_set
    photos = int(fig["photos"])
    assert int(fig["false_blocked"]) <= 0.01 * photos, fig["_output"]
    assert int(fig["review"]) <= 0.25 * photos, fig["_output"]


def test_every_face_is_detected(scanned_set):
    _, _, fig = scanned_set
    got, total = (int(v) for v in fig["detected"].split("/"))
    assert got == total, fig["_output"]


def test_unenrolled_listed_student_sends_every_face_photo_to_review(tmp_path: Path):
    """A listed student without a reference photo: nothing with a face may come out clear."""
    events = make_event_set(tmp_path / "events", photos=4, seed=5)
    cli = Cli(f"sqlite:///{tmp_path / 'photocheck.db'}")
    cli("roster", "import", events / "roster" / "no_consent.csv")  # imported, never enrolled
    report = tmp_path / "report.json"
    cli("scan", events / "photos", "--json", report, "--jobs", "1", expect=1)
    from tests.helpers import load_report

    for im in load_report(report)["images"]:
        if im["faces"]:
            assert im["verdict"] == "review", im
