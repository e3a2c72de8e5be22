"""Small things a user trips on: time zones in reports, tables at 80 columns, help that tells
the truth, error cards a school user understands."""
from __future__ import annotations

import json
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


def _at_80_columns(cli, *args: str) -> str:
    from photocheck.cli import app

    result = cli.runner.invoke(app, [str(a) for a in args], env={"PHOTOCHECK_DB": cli.db_url,
                                                                 "PHOTOCHECK_USER": cli.user, "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _whole(value: str, out: str) -> bool:
    """Every word of `value` is a whole word of the output, and the value is not cut short."""
    words = set(out.split())
    return "…" not in out and all(w in words for w in value.split())


def test_review_list_at_80_columns_cuts_and_splits_nothing(cli, demo_copy: Path, tmp_path: Path):
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    photos = tmp_path / "Picture day 2026" / "Northfield_Elementary_class_4B_outdoor_session"
    photos.parent.mkdir()
    (demo_copy / "sample_images").rename(photos)
    cli("scan", photos, "--jobs", "1", "--as", "alice.longname", expect=1)
    out = _at_80_columns(cli, "review", "list")
    assert max(len(line) for line in out.splitlines()) <= 80 or all(
        str(photos) in line for line in out.splitlines() if len(line) > 80)  # only a path longer than the screen
    for item in json.loads(cli("review", "list", "--json").output):
        assert item["path"] in out  # whole, on one line
        for value in (str(item["photo_id"]), item["verdict"], item["scanned_by"], item["state"], *item["reasons"]):
            assert _whole(value, out), (value, out)


def test_roster_list_at_80_columns_cuts_and_splits_nothing(cli, tmp_path: Path):
    roster = tmp_path / "r.csv"
    rows = [("STU-2026-000123", "Maximiliane", "Featherstonehaugh-Worthington", "Northfield International Academy",
             "12", "web;social;yearbook"), ("D7", "Al", "Li", "North", "1", "all")]
    roster.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                      + "".join(",".join(r) + "\n" for r in rows))
    cli("roster", "import", roster)
    out = _at_80_columns(cli, "roster", "list")
    assert max(len(line) for line in out.splitlines()) <= 80
    for sid, first, last, campus, grade, _ in rows:
        assert f"{first} {last}" in out
        for value in (sid, campus, grade, "UNPROTECTED"):
            assert _whole(value, out), (value, out)


def _help(cli, *args: str) -> str:
    return " ".join(cli(*args, "--help").output.replace("│", " ").split())


def test_scan_jobs_help_describes_the_worker_layout_scan_uses(cli):
    from photocheck.worker import pool_shape

    text = _help(cli, "scan")
    assert "decode+detect and an encode worker" not in text
    assert "one worker process per two cores" in text and "1 screens in this process" in text
    assert [pool_shape(j)[0] for j in (2, 4, 8)] == [1, 2, 4]  # what the help says: one per two cores


def test_publish_help_says_what_to_is(cli):
    text = _help(cli, "publish")
    assert "into DIR" not in text and "CHANNEL into" not in text
    assert "--to FOLDER" in text and "Where the publishable copies are written (created if missing)" in text
    assert "manifest.json in that folder" in text


def _png_header(w: int, h: int) -> bytes:
    """A PNG that announces w x h pixels (no pixel data): enough for any decoder to refuse it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_html_error_cards_give_one_plain_reason_consistent_with_the_limit(cli, demo_copy: Path, tmp_path: Path):
    from photocheck.images import effective_pixel_limit

    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "huge.png").write_bytes(_png_header(20000, 10000))  # 200 MP: PIL itself refuses to open it
    good = (demo_copy / "sample_images" / "obama1.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(good[: len(good) // 3])
    (photos / "notes.jpg").write_text("not a photo")
    cli("scan", photos, "--jobs", "1", "--html", tmp_path / "r.html", expect=1)
    html = (tmp_path / "r.html").read_text()
    cards = {re.search(r'<p class="path"[^>]*>([^<]*)</p>', c).group(1).rsplit("/", 1)[-1]: c
             for c in re.findall(r'<article class="card error">.*?</article>', html, re.S)}
    assert set(cards) == {"huge.png", "cut.jpg", "notes.jpg"}
    limit = f"{effective_pixel_limit() / 1e6:.0f}"
    for name, card in cards.items():
        shown = re.sub(r"<details.*?</details>", "", card, flags=re.S)  # what is read without clicking
        text = re.sub(r"<[^>]+>", " ", shown)
        assert len(re.findall(r'<p class="err">', shown)) == 1 and "<li>" not in shown, card  # once
        assert not re.search(r"\b\w+(Error|Exception)\b|0x[0-9a-f]{6,}|BytesIO", text), card  # no raw exception
        assert "must not be published" in text
        numbers = re.findall(r"[\d,]{5,}", re.sub(r"<details.*?</details>", "", card, flags=re.S))
        assert not numbers or name == "huge.png", card
    huge = re.sub(r"<[^>]+>", " ", cards["huge.png"])
    assert f"Too big to check: 20,000 × 10,000 pixels, 200 megapixels; photocheck reads photos of up to {limit} " \
           "megapixels" in " ".join(huge.split())
    assert "178956970" not in cards["huge.png"] and "179 MP" not in cards["huge.png"]  # PIL's own error threshold
    assert "damaged or incomplete" in cards["cut.jpg"] and "Not a photo" in cards["notes.jpg"]
