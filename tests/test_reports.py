"""Reports: JSON (scored by the real score_scan.py), CSV, HTML contact sheet, atomic writes."""
from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from photocheck import reports
from photocheck.reports import html_report, to_json_dict, write_csv, write_html, write_json, write_reports
from photocheck.reports._atomic import atomic_open
from photocheck.results import FaceResult, FaceStatus, PhotoResult, ScanSummary, Verdict
from tests.helpers import TOOLS

SCORE_SCAN = TOOLS / "score_scan.py"
FORMULA_PATH = "=cmd|' /C calc'!A0"
MARKUP_NAME = "<img src=x onerror=alert(1)>.jpg"


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> None:
    im = Image.new("RGB", size, (90, 140, 200))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    im.save(path, "JPEG", exif=exif.tobytes())


@pytest.fixture
def summary(tmp_path: Path) -> ScanSummary:
    photos = tmp_path / "photos"
    photos.mkdir()
    _jpeg(photos / "blocked.jpg", (640, 480))
    _jpeg(photos / "review.jpg", (400, 300), orientation=6)  # stored sideways: upright 300x400
    _jpeg(photos / "clear.jpg", (320, 240))
    _jpeg(photos / MARKUP_NAME, (200, 200))
    gone = photos / "deleted.jpg"  # scanned, then deleted before the report was written
    _jpeg(gone, (100, 100))
    gone.unlink()

    p = lambda name: str(photos / name)  # noqa: E731
    return ScanSummary(
        scan_id=7, started_at="2025-05-01T09:00:00+00:00", finished_at="2025-05-01T09:01:00+00:00",
        owner="teacher@school", roots=[str(photos)], thresholds={"block": 0.5, "uncertain": 0.6},
        model={"detector": "centerface", "encoder": "dlib-resnet", "version": "1"},
        listed_students=2, unprotected_students=[],
        photos=[
            # clear first: the HTML must still put blocked first
            PhotoResult(p("clear.jpg"), Verdict.CLEAR, faces=[
                FaceResult((40, 120, 120, 40), FaceStatus.NO_MATCH, 0.97, distance=0.81)],
                sha256="c" * 64, width=320, height=240),
            PhotoResult(p("blocked.jpg"), Verdict.BLOCKED, reasons=["listed student S100001"], faces=[
                FaceResult((100, 300, 260, 140), FaceStatus.LISTED, 0.99123456, student_id="S100001",
                           candidate_id="S100001", distance=0.123456789, reason="within block distance"),
                FaceResult((50, 600, 150, 500), FaceStatus.NO_MATCH, 0.9, distance=0.7)],
                sha256="b" * 64, width=640, height=480),
            PhotoResult(p("review.jpg"), Verdict.REVIEW, reasons=["@SUM(1+1) uncertain face"], faces=[
                FaceResult((200, 250, 300, 150), FaceStatus.UNCERTAIN, 0.8, candidate_id="S100002",
                           distance=0.55, reason="uncertain band")],
                sha256="d" * 64, width=300, height=400),
            PhotoResult(p("deleted.jpg"), Verdict.ERROR, reasons=["unreadable"], error="truncated file"),
            PhotoResult(FORMULA_PATH, Verdict.ERROR, reasons=["-not found"], error="\tno such file"),
            PhotoResult(p(MARKUP_NAME), Verdict.CLEAR, sha256="e" * 64, width=200, height=200),
            PhotoResult(str(photos / "<script>alert(1)</script>.jpg"), Verdict.ERROR, error="gone"),
        ],
    )


def _truth(summary: ScanSummary) -> dict:
    names = {Path(ph.path).name: ph for ph in summary.photos}
    blocked, review, clear = names["blocked.jpg"], names["review.jpg"], names["clear.jpg"]
    return {"no_consent": ["S100001"], "photos": [
        {"file": "photos/blocked.jpg", "has_no_consent": True, "people": [
            {"box": list(blocked.faces[0].box), "student_id": "S100001", "no_consent": True},
            {"box": list(blocked.faces[1].box), "student_id": "S100009", "no_consent": False}]},
        {"file": "photos/review.jpg", "has_no_consent": False, "people": [
            {"box": list(review.faces[0].box), "student_id": "S100005", "no_consent": False}]},
        {"file": "photos/clear.jpg", "has_no_consent": False, "people": [
            {"box": list(clear.faces[0].box), "student_id": "S100006", "no_consent": False}]},
        {"file": "photos/deleted.jpg", "has_no_consent": False, "people": []},
    ]}


# ---------------------------------------------------------------- JSON

def test_json_scored_by_score_scan(summary, tmp_path, capsys):
    if not SCORE_SCAN.is_file():
        pytest.skip(f"{SCORE_SCAN} not present")
    spec = importlib.util.spec_from_file_location("score_scan", SCORE_SCAN)
    score_scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score_scan)

    report = write_json(summary, tmp_path / "report.json")
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps(_truth(summary)))
    rc = score_scan.main(["--truth", str(truth), "--report", str(report)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0
    assert last == ("missed=0 false_blocked=0 review=1 errors=1 absent=0 identified=1/1 photos=4 "
                    "detected=4/4 wrong_id=0")


def test_json_fields(summary, tmp_path):
    data = json.loads(write_json(summary, tmp_path / "r.json").read_text())
    assert data["photocheck"]["version"]
    assert "second person" in data["note"] and "No photo is approved" in data["note"]
    assert data["scan"] == {"id": 7, "started_at": summary.started_at, "finished_at": summary.finished_at,
                            "owner": "teacher@school", "roots": summary.roots}
    assert data["thresholds"] == {"block": 0.5, "uncertain": 0.6}
    assert data["model"]["encoder"] == "dlib-resnet"
    assert data["roster"] == {"listed_students": 2, "unprotected_students": []}
    assert data["counts"] == {"error": 3, "blocked": 1, "review": 1, "clear": 2}
    im = next(i for i in data["images"] if i["verdict"] == "blocked")
    assert set(im) >= {"path", "verdict", "reasons", "faces", "sha256", "width", "height", "error"}
    assert (im["width"], im["height"], im["error"]) == (640, 480, None)
    face = im["faces"][0]
    assert face == {"box": [100, 300, 260, 140], "student_id": "S100001", "status": "listed",
                    "candidate_id": "S100001", "distance": 0.1235, "reason": "within block distance",
                    "detector_score": 0.9912}
    assert im["faces"][1]["student_id"] is None
    # The report holds paths exactly as given (score_scan matches on the file name).
    assert [i["path"] for i in data["images"]] == [p.path for p in summary.photos]


def test_json_never_contains_an_encoding(summary, tmp_path):
    text = write_json(summary, tmp_path / "r.json").read_text()
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    assert not re.search(rf"\[\s*(?:{number}\s*,\s*){{127}}{number}\s*\]", text)
    # And the writer refuses one smuggled in through the free-form dicts.
    summary.model["encoding"] = [0.01 * i for i in range(128)]
    with pytest.raises(ValueError, match="encoding"):
        to_json_dict(summary)


def test_json_non_ascii_and_nan(summary, tmp_path):
    summary.photos[0].path = summary.photos[0].path.replace("clear", "Zoë")
    summary.photos[0].faces[0].distance = float("nan")
    raw = write_json(summary, tmp_path / "r.json").read_bytes()
    raw.decode("ascii")  # readable under any locale encoding
    data = json.loads(raw)
    assert "Zoë" in data["images"][0]["path"]
    assert data["images"][0]["faces"][0]["distance"] is None


# ---------------------------------------------------------------- CSV

def test_csv_rows_and_escaping(summary, tmp_path):
    out = write_csv(summary, tmp_path / "r.csv")
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM so Excel on Windows reads UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == ["path", "verdict", "faces", "listed_students", "review_faces",
                             "reasons", "error", "sha256", "group", "group_size", "group_verdict",
                             "channel_verdicts", "kind", "duration_s", "flagged_times"]
    assert len(rows) == len(summary.photos)
    by_name = {Path(r["path"]).name: r for r in rows}
    b = by_name["blocked.jpg"]
    assert (b["verdict"], b["faces"], b["listed_students"], b["review_faces"]) == ("blocked", "2", "S100001", "0")
    assert b["sha256"] == "b" * 64
    r = by_name["review.jpg"]
    assert r["review_faces"] == "1" and r["reasons"] == "'@SUM(1+1) uncertain face"
    f = next(r for r in rows if "calc" in r["path"])
    assert f["path"] == "'" + FORMULA_PATH
    assert f["reasons"] == "'-not found" and f["error"] == "'\tno such file"
    assert by_name["deleted.jpg"]["error"] == "truncated file"


# ---------------------------------------------------------------- HTML

def test_html_contact_sheet(summary, tmp_path):
    text = write_html(summary, tmp_path / "r.html", thumbnail_px=120).read_text(encoding="utf-8")
    low = text.lower()
    assert "<script" not in low and "<img src=x" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in text
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in text
    assert "http://" not in low and "https://" not in low
    assert "second person" in text
    # 4 readable photos -> 4 thumbnails; deleted/missing files get a placeholder instead.
    assert text.count("data:image/jpeg;base64,") == 4
    assert text.count("No preview: photocheck could not read this file.") == 3  # error photos are never decoded
    cards = re.findall(r'<article class="card (\w+)"', text)
    assert cards == ["blocked", "error", "error", "error", "review", "clear", "clear"]
    # Listed face: red box labelled with the student id, scaled from 640x480 to percentages.
    m = re.search(r'<div class="box listed[^"]*" style="([^"]*)"[^>]*><span>S100001</span></div>', text)
    assert m, "no listed box"
    assert m.group(1) == "left:21.875%;top:20.833%;width:25.000%;height:33.333%"
    assert re.search(r"\.box\.listed\{border:3px solid #d00000\}", text)
    assert '<div class="box review' in text and "S100002" in text
    assert '<div class="box nomatch' in text


def test_html_thumbnail_is_upright(summary, tmp_path):
    text = write_html(summary, tmp_path / "r.html", thumbnail_px=100).read_text(encoding="utf-8")
    card = next(c for c in text.split("<article")[1:] if "review.jpg" in c)
    b64 = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", card).group(1)
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert im.size == (75, 100)  # 400x300 stored with orientation 6 -> upright portrait


# ---------------------------------------------------------------- atomic writes

def test_write_reports_leaves_no_temp_files(summary, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    written = write_reports(summary, json=out / "r.json", csv=out / "r.csv", html=out / "r.html")
    assert set(written) == {"json", "csv", "html"}
    assert sorted(p.name for p in out.iterdir()) == ["r.csv", "r.html", "r.json"]
    assert reports.__all__ and {"write_json", "write_csv", "write_html", "write_reports"} <= set(reports.__all__)


def test_failed_write_keeps_old_report(summary, tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old report")

    calls = 0

    def flaky_card(photo, px):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("crash mid-report")
        return "<article></article>"

    monkeypatch.setattr(html_report, "_card", flaky_card)
    with pytest.raises(RuntimeError):
        write_html(summary, target)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["r.html"]


def test_atomic_open_cleans_up(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "w", encoding="utf-8") as f:
            f.write("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_html_unreadable_and_transparent_photos(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    png = tmp_path / "screenshot.png"
    Image.new("RGBA", (50, 40), (0, 0, 0, 0)).save(png)
    s = ScanSummary(None, "2025-05-01T09:00:00", None, "me", [str(tmp_path)], {}, {}, 0, ["S1"], photos=[
        PhotoResult(str(bad), Verdict.ERROR, error="cannot decode"),
        PhotoResult(str(png), Verdict.REVIEW, reasons=["unprotected student"], faces=[
            FaceResult((5, 30, 30, 5), FaceStatus.UNPROTECTED)], width=50, height=40)])
    text = write_html(s, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No preview: photocheck could not read this file." in text and "UnidentifiedImageError" not in text
    assert "S1" in text  # unprotected students are called out in the header
    b64 = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text).group(1)
    thumb = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert thumb.getpixel((25, 20)) > (240, 240, 240)  # transparency flattened onto white, not black
