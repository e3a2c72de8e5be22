"""Small things a user trips on: time zones in reports, tables at 80 columns, help that tells
the truth, error cards a school user understands."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from photocheck.db import open_database
from photocheck.db.models import Scan
from tests.helpers import load_report


def _aware_utc(text: str) -> bool:
    t = datetime.fromisoformat(text)
    return t.utcoffset() == timedelta(0)


@pytest.mark.backends("sqlite", "postgresql")
def test_a_resumed_scan_reports_its_times_with_their_time_zone(cli, demo_copy: Path, db_url: str, tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    photos = demo_copy / "sample_images"
    cli("scan", photos, "--jobs", "1", expect=1)
    db = open_database(db_url)
    try:
        with db.session() as s:  # as a scan killed half-way leaves it
            s.execute(update(Scan).values(status="running", finished_at=None))
        with db.session() as s:  # the round-trip through the database keeps the zone
            assert s.scalars(select(Scan)).one().started_at.utcoffset() == timedelta(0)
    finally:
        db.dispose()
    out = cli("scan", photos, "--jobs", "1", "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv",
              "--html", tmp_path / "r.html", expect=1).output
    assert "Resumed unfinished scan" in out
    scan = load_report(tmp_path / "r.json")["scan"]
    assert _aware_utc(scan["started_at"]) and _aware_utc(scan["finished_at"]), scan
    html = (tmp_path / "r.html").read_text()
    for key in ("Started", "Finished"):
        cell = re.search(rf"<th>{key}</th><td>([^<]*)</td>", html).group(1)
        assert _aware_utc(cell), (key, cell)
    # the CSV has one row per photo and no times; no cell looks like a time without its zone
    assert not re.search(r"\d\d:\d\d:\d\d(?![.\d]*(Z|[+-]\d\d:\d\d))", (tmp_path / "r.csv").read_text())
    # the contact sheet made later from the database says the same
    cli("review", "list", "--scan", str(scan["id"]), "--html", tmp_path / "later.html")
    later = (tmp_path / "later.html").read_text()
    assert re.search(r"<th>Started</th><td>([^<]*)</td>", later).group(1) == scan["started_at"]
