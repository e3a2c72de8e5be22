"""Each rule written once: verdict orders, channels, row -> result, web queries, the scan cache key."""
from __future__ import annotations

import re
from pathlib import Path

from photocheck.groups import assign_groups
from photocheck.reports.html_report import write_html
from photocheck.results import (
    DISPLAY_ORDER,
    SEVERITY,
    PhotoResult,
    ScanSummary,
    Verdict,
    display_rank,
    worst,
)
from tests.helpers import REPO

B, E, R, C = Verdict.BLOCKED, Verdict.ERROR, Verdict.REVIEW, Verdict.CLEAR


def test_the_two_verdict_orders_are_pinned():
    # Combining: an unreadable file could hide anything, so error outranks blocked.
    assert sorted(Verdict, key=SEVERITY.__getitem__) == [C, R, B, E]
    assert worst(C, R) == R and worst(R, B) == B and worst(B, E) == E and worst("clear") == C
    # Showing: a listed student found first, then files to fix, faces to look at, the rest.
    assert DISPLAY_ORDER == (B, E, R, C)
    assert [display_rank(v) for v in ("blocked", "error", "review", "clear", "not screened", None)] == [0, 1, 2, 3, 4, 4]


def test_no_module_writes_its_own_verdict_order():
    """A second ranking (a dict of verdicts to numbers, a tuple of the four) drifts; results.py has the only one."""
    key = re.compile(r"""(?:["']|Verdict\.)(?:blocked|error|review|clear|BLOCKED|ERROR|REVIEW|CLEAR)["']?\s*:\s*\d""")
    listing = re.compile(r"\(\s*Verdict\.BLOCKED,\s*Verdict\.\w+,\s*Verdict\.\w+,")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "photocheck").rglob("*.py"))
                 if p.name != "results.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if len(key.findall(line)) >= 2 or listing.search(line)]
    assert offenders == []


def test_groups_combine_by_severity_and_reports_show_in_display_order(tmp_path: Path):
    photos = [PhotoResult(path=f"/x/{i}.jpg", verdict=v, phash="0" * 16) for i, v in enumerate((C, B, E, R))]
    assign_groups(photos, 0)
    assert {p.group_verdict for p in photos} == {E}  # the group's verdict: the worst member
    singles = [PhotoResult(path=f"/y/{i}.jpg", verdict=v) for i, v in enumerate((C, R, E, B))]
    summary = ScanSummary(scan_id=1, started_at="", finished_at=None, owner="t", roots=[], thresholds={},
                          model={}, listed_students=0, unprotected_students=[], photos=singles)
    html = write_html(summary, tmp_path / "r.html").read_text()
    cards = re.findall(r'class="card (\w+)', html)
    assert cards == ["blocked", "error", "review", "clear"]


def test_channels_are_defined_once():
    from photocheck import config, roster

    assert roster.CHANNELS == ("all", *config.SCHOOL_CHANNELS)
    assert "SCHOOL_CHANNELS = (" not in (REPO / "photocheck/roster.py").read_text()


def test_a_stored_result_reads_back_whole_wherever_it_is_read(tmp_path: Path):
    """scan cache/resume, reports from the database and the web review share one row -> result
    conversion; a clip's kind, length and face times, text hits and channel verdicts survive it."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from photocheck.db import open_database
    from photocheck.db.convert import photo_result
    from photocheck.db.models import Photo, Scan
    from photocheck.results import FaceResult, FaceStatus
    from photocheck.review import scan_summary
    from photocheck.scan import _add_photos

    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    clip = PhotoResult(
        path=str(tmp_path / "clip.mp4"), verdict=B, reasons=["a", "b"], sha256="ab" * 32, width=640, height=360,
        faces=[FaceResult(box=(1, 50, 60, 2), status=FaceStatus.LISTED, detector_score=0.9, student_id="S1",
                          candidate_id="S1", distance=0.3, reason="listed", time_s=2.5)],
        channel_verdicts={"web": B, "yearbook": R}, phash="0123456789abcdef", text_hits=2, kind="video",
        duration_s=12.0)
    with db.session() as s:
        scan = Scan(owner="t", roots="[]", thresholds='{"grouping": {"max_hamming": 6}}', model="{}",
                    roster_fingerprint="x", status="finished")
        s.add(scan)
        s.flush()
        _add_photos(s, scan.id, [(clip, None)], "t")
        scan_id = scan.id
    with db.session() as s:
        row = s.scalars(select(Photo).options(selectinload(Photo.faces))).one()
        stored = photo_result(row)
    reported = scan_summary(db, scan_id).photos[0]
    for got in (stored, reported):
        for name in ("path", "verdict", "reasons", "faces", "sha256", "width", "height", "channel_verdicts",
                     "photo_id", "phash", "text_hits", "kind", "duration_s"):
            assert getattr(got, name) == getattr(clip, name), name
    source = "\n".join(p.read_text() for p in (REPO / "photocheck").rglob("*.py") if p.name != "convert.py")
    assert "FaceResult(box=(f.top" not in source  # no second copy of the conversion


def test_the_web_review_asks_the_library_and_uses_public_helpers():
    """Queries, grouping and order are review.py's; the report's helpers it shares are public."""
    for p in sorted((REPO / "photocheck/web").glob("*.py")):
        text = p.read_text()
        assert "sqlalchemy" not in text, p.name
        assert not re.search(r"from photocheck\.\S+ import .*\b_\w+", text), p.name


def test_memory_only_settings_keep_the_scan_cache_verdict_settings_do_not(cli, demo_copy: Path, db_url: str):
    """tile_rows/tile_margin change memory use, never a detection, and [redact] is never read by a
    scan: a rescan with other values reuses the stored results; a changed verdict-changing number
    screens again."""
    import dataclasses

    from photocheck.db import open_database
    from photocheck.scan import scan
    from photocheck.thresholds import load_thresholds

    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    photos = demo_copy / "sample_images"
    db = open_database(db_url)
    th = load_thresholds()
    first = scan(db, [photos], owner="t", jobs=1, thresholds=th).summary
    assert first.photos and not any(p.cached for p in first.photos)
    untiled = dataclasses.replace(th, detector=dataclasses.replace(th.detector, tile_rows=0, tile_margin=0))
    assert untiled.fingerprint() == th.fingerprint()
    again = scan(db, [photos], owner="t", jobs=1, thresholds=untiled).summary
    assert all(p.cached for p in again.photos)
    assert [(p.path, p.verdict) for p in again.photos] == [(p.path, p.verdict) for p in first.photos]
    covers = dataclasses.replace(th, redact=dataclasses.replace(th.redact, pad=0.3, move_pad=0.5))
    assert covers.fingerprint() == th.fingerprint()  # [redact] shapes redacted copies, never a scan verdict
    assert all(p.cached for p in scan(db, [photos], owner="t", jobs=1, thresholds=covers).summary.photos)
    coarse = dataclasses.replace(th, detector=dataclasses.replace(th.detector, min_score=th.detector.min_score + 0.01))
    assert coarse.fingerprint() != th.fingerprint()
    assert not any(p.cached for p in scan(db, [photos], owner="t", jobs=1, thresholds=coarse).summary.photos)


def test_numbers_that_change_a_verdict_or_a_redaction_come_from_thresholds_toml(tmp_path: Path):
    """Sharpness crop size, box clamps, the coarse-pass trigger and the redaction padding are read
    from models/thresholds.toml, not written in code (the detector's in the scan cache key)."""
    import dataclasses

    import numpy as np

    from photocheck.engine import FaceEngine
    from photocheck.images import load_image
    from photocheck.redact import cover, padded_box
    from photocheck.thresholds import ThresholdsError, load_thresholds

    th = load_thresholds()
    d = th.detector
    assert (d.quality_crop_px, d.map_side_min, d.map_side_max, d.coarse_max_ratio) == (64, 0.7, 1.4, 0.75)
    assert (th.redact.pad, th.redact.pixel_blocks, th.redact.move_pad) == (0.45, 5, 0.25)
    assert dataclasses.replace(th, detector=dataclasses.replace(d, quality_crop_px=32)).fingerprint() != th.fingerprint()
    text = (REPO / "models/thresholds.toml").read_text()
    (tmp_path / "t.toml").write_text(text.replace("\npad = 0.45\n", "\n"))
    try:
        load_thresholds(tmp_path / "t.toml")
        raise AssertionError("a thresholds file without [redact] pad was accepted")
    except ThresholdsError as exc:
        assert "pad" in str(exc)
    code = "\n".join((REPO / "photocheck" / f).read_text() for f in ("engine.py", "redact.py", "clipcopy.py"))
    for literal in ("SHARPNESS_SIZE", "0.7 * box_side", "1.4 * box_side", "main * 0.75", "PAD = ", "PIXEL_BLOCKS = "):
        assert literal not in code, literal
    from photocheck.clipcopy import _Sample, boxes_between  # a clip's box between two detections

    a_, b_ = _Sample(0.0, [(100, 200, 200, 100)], [True]), _Sample(0.1, [(100, 400, 200, 300)], [True])
    moved = [boxes_between(a_, b_, 0.05, 1000, 1000, 0.45, mp)[-1] for mp in (0.0, th.redact.move_pad)]
    assert moved[0][3] - moved[1][3] == 25  # left edge: 0.25 x the 100 px side further out

    # Real photo: the engine reads them.
    img = load_image(REPO / "sample_images" / "obama1.jpg")
    base = FaceEngine(d)
    small_crop = FaceEngine(dataclasses.replace(d, quality_crop_px=32))
    a, b = base.detect(img.view), small_crop.detect(img.view)
    assert [x.box for x in a] == [x.box for x in b] and a
    assert [x.sharpness for x in a] != [x.sharpness for x in b]
    no_coarse = FaceEngine(dataclasses.replace(d, coarse_max_ratio=0.01))
    assert len(base.pass_inputs(img.view)) == 2 and len(no_coarse.pass_inputs(img.view)) == 1
    # Redaction: padding and pixel blocks as configured.
    assert padded_box((100, 200, 200, 100), 1000, 1000, 0.5) == (50, 250, 250, 50)
    rgb = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    out = cover(rgb, [(0, 100, 100, 0)], "pixelate", 2)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 4


def test_model_files_graph_rewrites_and_inference_each_in_one_module():
    """The recorded model hashes are in model_files.py only; only centerface_graph.py imports onnx
    (dev group: the runtime never needs it); the engine reads photos and arrays through one view
    interface (images.as_view), without branching on their type."""
    sha = re.compile(r"\b[0-9a-f]{64}\b")
    onnx_import = re.compile(r"^\s*(?:import onnx\b|from onnx\b)", re.M)
    files = sorted((REPO / "photocheck").rglob("*.py"))
    assert [p.name for p in files if sha.search(p.read_text())] == ["model_files.py"]
    assert [p.name for p in files if onnx_import.search(p.read_text())] == ["centerface_graph.py"]
    assert "isinstance(" not in (REPO / "photocheck" / "engine.py").read_text()
