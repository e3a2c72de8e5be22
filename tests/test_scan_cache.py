"""Scan cache, interrupt-safe resume and burst grouping — real engine, real database, real processes."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from photocheck.db import open_database
from photocheck.db.models import Photo, Scan
from photocheck.groups import assign_groups, dhash, hamming
from photocheck.results import PhotoResult, Verdict
from photocheck.scan import scan
from photocheck.thresholds import load_thresholds
from tests.helpers import REPO, load_report

PHOTOCHECK = Path(sys.executable).parent / "photocheck"


def _setup(cli, demo_copy: Path) -> Path:
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    return demo_copy / "sample_images"


def test_rescan_reuses_results_only_with_same_roster_models_and_thresholds(cli, demo_copy: Path, db_url: str,
                                                                             tmp_path: Path):
    photos = _setup(cli, demo_copy)
    cli("scan", photos, "--json", tmp_path / "a.json", "--jobs", "1", expect=1)
    cli("scan", photos, "--json", tmp_path / "b.json", "--jobs", "1", expect=1)
    a, b = load_report(tmp_path / "a.json"), load_report(tmp_path / "b.json")
    assert b["scan"]["id"] != a["scan"]["id"]  # a rescan is a new scan record...
    assert not any(im["cached"] for im in a["images"])
    assert all(im["cached"] for im in b["images"])  # ...built from the stored results, not re-decoded
    strip = lambda r: [{k: v for k, v in im.items() if k != "cached"} for im in r["images"]]  # noqa: E731
    assert strip(a) == strip(b)
    db = open_database(db_url)
    with db.session() as s:
        for scan_id in (a["scan"]["id"], b["scan"]["id"]):
            rows = s.scalars(select(Photo).where(Photo.scan_id == scan_id)).all()
            assert len(rows) == 4 and all(p.signoff_state == "pending" for p in rows)
            assert {p.path for p in rows} == {im["path"] for im in a["images"]}
        assert all(p.faces for p in s.scalars(select(Photo).where(Photo.scan_id == b["scan"]["id"]))
                   if p.verdict == "blocked")

    # Different thresholds: nothing may be reused.
    th = load_thresholds()
    other = dataclasses.replace(th, match=dataclasses.replace(th.match, block_distance=0.5))
    out = scan(db, [photos], owner="t", jobs=1, thresholds=other).summary
    assert not any(p.cached for p in out.photos)
    # A changed roster (listed student no longer enrolled): nothing may be reused either.
    empty = tmp_path / "empty.csv"
    empty.write_text("student_id,first_name,last_name,campus,grade,opt_out\n")
    cli("roster", "import", empty)
    out = scan(db, [photos], owner="t", jobs=1).summary
    assert not any(p.cached for p in out.photos)
    assert all(p.verdict != Verdict.BLOCKED for p in out.photos)


def _copies(src: Path, dest: Path, n: int) -> Path:
    dest.mkdir()
    files = sorted(src.glob("*.jpg"))
    for i in range(n):
        f = files[i % len(files)]
        # distinct bytes (and sha256) after the JPEG end marker: same pixels, no cache hit
        (dest / f"p{i:02d}_{f.name}").write_bytes(f.read_bytes() + f"copy{i}".encode())
    return dest


@pytest.mark.backends("sqlite", "postgresql")
def test_killed_scan_resumes_without_losing_or_repeating_a_photo(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    photos = _copies(_setup(cli, demo_copy), tmp_path / "batch", 10)
    env = dict(os.environ, PHOTOCHECK_DB=db_url, PHOTOCHECK_USER="tester")
    cmd = [str(PHOTOCHECK), "scan", str(photos), "--jobs", "2", "--json", str(tmp_path / "r.json")]
    db = open_database(db_url)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with db.session() as s:
                stored = s.scalar(select(func.count()).select_from(Photo))
            if stored >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "scan finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with db.session() as s:
        assert 3 <= s.scalar(select(func.count()).select_from(Photo)) < 10
        assert s.scalars(select(Scan.status)).all() == ["running"]  # killed: never marked finished

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    report = load_report(tmp_path / "r.json")
    paths = [im["path"] for im in report["images"]]
    assert sorted(paths) == sorted(str(p) for p in photos.iterdir())  # each photo exactly once
    with db.session() as s:
        scans = s.scalars(select(Scan)).all()
        assert len(scans) == 1 and scans[0].status == "finished" and scans[0].id == report["scan"]["id"]
        rows = s.scalars(select(Photo)).all()
        assert len(rows) == 10 and len({p.path for p in rows}) == 10
        assert not any(p.verdict == "error" for p in rows)
    blocked = {Path(p).name.split("_", 1)[1] for p, im in zip(paths, report["images"]) if im["verdict"] == "blocked"}
    assert blocked == {"biden1.jpg", "together_sideways.jpg"}


def test_dhash_groups_bursts_and_group_verdict_is_the_worst():
    from PIL import Image

    img = np.asarray(Image.open(REPO / "sample_images" / "obama1.jpg").convert("RGB"))
    other = np.asarray(Image.open(REPO / "sample_images" / "biden1.jpg").convert("RGB"))
    burst = np.clip(img.astype(np.int16)[:, 6:] + 5, 0, 255).astype(np.uint8)  # moved a little, brighter
    h, hb, ho = dhash(img), dhash(burst), dhash(other)
    max_h = load_thresholds().grouping.max_hamming
    assert hamming(h, hb) <= max_h < hamming(h, ho)
    photos = [PhotoResult(path="a", verdict=Verdict.CLEAR, phash=h),
              PhotoResult(path="b", verdict=Verdict.BLOCKED, phash=hb),
              PhotoResult(path="c", verdict=Verdict.CLEAR, phash=ho),
              PhotoResult(path="d", verdict=Verdict.ERROR)]
    assign_groups(photos, max_h)
    a, b, c, d = photos
    assert a.group == b.group and a.group_size == 2 and c.group != a.group and d.group not in (a.group, c.group)
    # grouping never hides a blocked face: each keeps its verdict, the group shows the worst
    assert (a.verdict, b.verdict) == (Verdict.CLEAR, Verdict.BLOCKED)
    assert a.group_verdict == b.group_verdict == Verdict.BLOCKED
    assert c.group_verdict == Verdict.CLEAR and d.group_verdict == Verdict.ERROR
    json.dumps([p.group for p in photos])


def test_reports_show_burst_groups_with_each_photos_own_verdict(tmp_path: Path):
    import csv

    from photocheck.reports import write_reports
    from photocheck.results import ScanSummary

    img = REPO / "sample_images" / "obama1.jpg"
    photos = [PhotoResult(path=str(img), verdict=Verdict.CLEAR, phash="0" * 16, width=910, height=1137),
              PhotoResult(path=str(img), verdict=Verdict.BLOCKED, phash="0" * 15 + "1", width=910, height=1137),
              PhotoResult(path=str(REPO / "sample_images" / "biden1.jpg"), verdict=Verdict.CLEAR, phash="f" * 16)]
    assign_groups(photos, 10)
    summary = ScanSummary(scan_id=1, started_at="x", finished_at="y", owner="o", roots=[], thresholds={},
                          model={}, listed_students=1, unprotected_students=[], photos=photos)
    out = write_reports(summary, json=tmp_path / "r.json", csv=tmp_path / "r.csv", html=tmp_path / "r.html")
    images = load_report(out["json"])["images"]
    assert [(i["verdict"], i["group"], i["group_size"], i["group_verdict"]) for i in images] == [
        ("clear", 1, 2, "blocked"), ("blocked", 1, 2, "blocked"), ("clear", 2, 1, "clear")]
    rows = list(csv.DictReader(out["csv"].read_text(encoding="utf-8-sig").splitlines()))
    assert [(r["verdict"], r["group"], r["group_verdict"]) for r in rows] == [
        ("clear", "1", "blocked"), ("blocked", "1", "blocked"), ("clear", "2", "clear")]
    html = out["html"].read_text(encoding="utf-8")
    assert html.count("Burst group 1: 2 near-identical photos") == 1
    section = html[html.index('<section class="group blocked">'):html.index("</section>")]
    assert section.count('<article class="card') == 2
    assert section.index('card blocked') < section.index('card clear')  # worst first, each its own badge
