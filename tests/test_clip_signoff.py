"""Clips through redaction, sign-off, the publish gate and the web review: clips made here with
PyAV from real faces, scanned with the real engine into a real database (D0001 is listed)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import stat
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from photocheck import config
from photocheck.db import open_database
from photocheck.db.models import Face, Photo, Redaction
from photocheck.engine import FaceEngine
from photocheck.model_files import model_info
from photocheck.results import FaceStatus, Verdict
from photocheck.students import load_references
from photocheck.thresholds import load_thresholds
from photocheck.users import add_user
from photocheck.video import screen_video
from tests.helpers import load_report
from tests.test_video import BIDEN, OBAMA, SAMPLES, face_tile, make_clip

# Tags a phone or an editor writes: none may leave with a published clip.
TAGS = {"title": "Emma Smith, grade 3", "comment": "Emma at sports day", "location": "+48.8566+002.3522/",
        "creation_time": "2024-05-01T10:00:00Z"}
PASSWORD = "correct horse battery"


@pytest.fixture
def scanned(cli, demo_copy: Path, tmp_path: Path, db_url: str):
    """A post with two blocked clips (a listed student walking across the frame; one standing still)
    and a clear one, scanned by "tester": (db, clip ids by name, folder)."""
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    post = tmp_path / "post"
    post.mkdir()
    biden, obama = face_tile(*BIDEN), face_tile(*OBAMA, face_px=70)
    # D0001 walks 200 px to the right between 0.5 and 3.5 s; a stranger stands at the bottom right all along.
    make_clip(post / "walk.mp4", [(biden, lambda t: 20 + 200 * (t - 0.5) / 3, 10, 0.5, 3.5),
                                  (obama, 470, 200, 0, 4)], seconds=4, tags=TAGS, sound="aac")
    make_clip(post / "still.mp4", [(biden, 200, 40, 0, 2)], seconds=2)
    make_clip(post / "clear.mp4", [(obama, 100, 100, 0, 2)], seconds=2, tags=TAGS, sound="aac")
    report = tmp_path / "scan.json"
    cli("scan", post, "--json", report, expect=1)
    items = {Path(i["path"]).name: i for i in load_report(report)["images"]}
    assert {n: i["verdict"] for n, i in items.items()} == {"walk.mp4": "blocked", "still.mp4": "blocked",
                                                           "clear.mp4": "clear"}
    db = open_database(db_url)
    with db.session() as s:
        ids = {Path(p.path).name: p.id for p in s.scalars(select(Photo))}
    yield db, ids, post
    db.dispose()


def _tags(path: Path) -> tuple[dict, list[dict], list[str]]:
    """(container tags, each stream's tags, sorted stream kinds) as PyAV reads them back."""
    with av.open(str(path)) as c:
        return dict(c.metadata), [dict(s.metadata) for s in c.streams], sorted(s.type for s in c.streams)


def _sound(path: Path) -> list[tuple[float, bytes]]:
    """(time, bytes) of every packet of the first sound track, as stored."""
    with av.open(str(path)) as c:
        return [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in c.demux(c.streams.audio[0]) if p.size]


# The ISO file-type box (brands), which FFmpeg lists among the tags: no information about anyone.
BRANDS = {"major_brand", "minor_version", "compatible_brands"}


@pytest.mark.backends("sqlite", "postgresql")
def test_clip_redacted_in_every_frame_then_signed_and_published_without_metadata(cli, scanned, tmp_path: Path):
    db, ids, post = scanned
    pid = ids["walk.mp4"]
    out_dir = config.data_dir() / "redacted"
    res = cli("redact", pid, "--out", out_dir)
    assert "sound copied unchanged" in " ".join(res.output.split()), res.output
    assert "re-scan found no listed face" in " ".join(res.output.split()), res.output
    with db.session() as s:
        red = s.scalars(select(Redaction)).one()
        photo = s.get(Photo, pid)
        assert red.photo_id == pid and red.source_sha256 == photo.sha256 and red.faces_covered > 10
    copy = Path(red.path)
    assert copy.suffix == ".mp4" and copy.parent == out_dir and "walk" not in copy.name
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # in the data folder
    assert not list(out_dir.glob(".*.tmp"))

    # Every frame (not only the sampled ones) is covered: the copy screened at every frame finds
    # no listed or possibly listed face, while the stranger is still there (not everything was blacked out).
    th = load_thresholds()
    every_frame = dataclasses.replace(th, video=dataclasses.replace(th.video, sample_interval_s=0.01))
    enc = model_info()["encoder"]
    refs = load_references(db, enc["name"], enc["version"])
    engine = FaceEngine(th.detector)
    r = screen_video(copy, engine, refs, every_frame)
    assert r.verdict is not Verdict.ERROR and "100 frames screened of 100" in r.reasons[-1], r.reasons
    assert not [f for f in r.faces if f.status in (FaceStatus.LISTED, FaceStatus.UNCERTAIN)], r.faces
    assert [f.status for f in r.faces if f.box[3] >= 400] == [FaceStatus.NO_MATCH]
    # The original, screened the same way, does show the student in the frames the copy covers.
    assert screen_video(post / "walk.mp4", engine, refs, every_frame).verdict is Verdict.BLOCKED

    cli("review", "sign", pid, "--decision", "redact", "--as", "bob")
    dest = tmp_path / "web"
    out = cli("publish", "--channel", "web", "--to", dest, pid, ids["still.mp4"], "--with-sound", expect=1).output
    assert "not signed off" in out  # the other blocked clip, pending: refused
    name = f"web-{pid:06d}.mp4"
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", name]
    tags, stream_tags, kinds = _tags(dest / name)
    assert set(tags) <= BRANDS, tags
    assert kinds == ["audio", "video"] and _sound(dest / name) == _sound(post / "walk.mp4")  # remuxed, not re-encoded
    assert not any(k in t for t in stream_tags for k in ("title", "name", "comment", "location", "creation_time"))
    assert "Emma" not in (dest / name).read_bytes().decode("latin-1")  # neither the clip's nor its sound's tags
    assert set(_tags(post / "walk.mp4")[0]) > BRANDS  # the source did carry tags
    (entry,) = json.loads((dest / "manifest.json").read_text())["files"]
    assert (entry["file"], entry["photo_id"], entry["decision"]) == (name, pid, "redact")
    # What went out is the redacted copy: no listed face in it either.
    assert screen_video(dest / name, engine, refs, th).verdict is not Verdict.BLOCKED

    # The stranger's family now refuses consent too: recheck screens the redacted copy as a clip,
    # finds them uncovered there, and lists the published clip for take-down.
    roster = tmp_path / "new.csv"
    roster.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                      "D0001,Joseph,Biden,Demo High School,12,all\nD0002,Barack,Obama,Demo,12,all\n")
    cli("roster", "import", roster)
    ref = tmp_path / "refs" / "D0002"
    ref.mkdir(parents=True)
    shutil.copy(SAMPLES / "obama3.jpg", ref / "obama3.jpg")
    cli("enroll", tmp_path / "refs")
    out = " ".join(cli("recheck", expect=1).output.split())
    assert "redacted copy shows 1 listed" in out and name in out, out


def test_approved_clear_clip_published_without_tags_and_pending_clip_refused(cli, scanned, tmp_path: Path):
    db, ids, _ = scanned
    pid = ids["clear.mp4"]
    dest = tmp_path / "web"
    assert "not signed off" in cli("publish", "--channel", "web", "--to", dest, pid, expect=1).output
    cli("review", "sign", pid, "--decision", "approve", "--as", "bob")
    cli("publish", "--channel", "web", "--to", dest, pid)
    tags, stream_tags, kinds = _tags(dest / f"web-{pid:06d}.mp4")
    assert set(tags) <= BRANDS and kinds == ["video"]  # photocheck never listens: no sound unless asked for
    assert not any("Emma" in v for t in stream_tags for v in t.values())
    cli("publish", "--channel", "web", "--to", dest, pid, "--with-sound")
    assert _tags(dest / f"web-{pid:06d}.mp4")[2] == ["audio", "video"]
    assert _sound(dest / f"web-{pid:06d}.mp4") == _sound(scanned[2] / "clear.mp4")
    with av.open(str(dest / f"web-{pid:06d}.mp4")) as c:
        assert c.streams.video[0].frames == 50 and (c.streams.video[0].width, c.streams.video[0].height) == (640, 360)


def test_a_sound_track_mp4_cannot_hold_is_left_out_and_said(tmp_path: Path):
    """Copies carry the sound unchanged only where MP4 can hold its codec; AVI's ADPCM is left out."""
    from photocheck.clipcopy import write_clean_copy

    src = make_clip(tmp_path / "old.avi", [(face_tile(*OBAMA, face_px=70), 100, 100, 0, 1)], seconds=1,
                    fmt="avi", sound="adpcm_ms", tags=TAGS)
    with open(tmp_path / "out.mp4", "wb") as fh:
        frames, sound = write_clean_copy(src, fh, load_thresholds().video)
    assert frames == 25 and sound.startswith("left out (adpcm_ms")
    tags, stream_tags, kinds = _tags(tmp_path / "out.mp4")
    assert set(tags) <= BRANDS and kinds == ["video"]


def test_clip_redaction_refused_when_the_copy_still_shows_the_student(cli, scanned, tmp_path: Path):
    """Covering nothing (a face box moved off the face, as a detector slip would) fails the re-scan."""
    import photocheck.clipcopy as clipcopy

    db, ids, _ = scanned
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clipcopy, "boxes_between", lambda *a: [])
        out = cli("redact", ids["still.mp4"], "--out", tmp_path / "red", expect=1).output
    assert "redaction refused" in out and "still found" in out
    assert not list((tmp_path / "red").iterdir())
    with db.session() as s:
        assert s.scalars(select(Redaction)).all() == []


def _client(app, user: str = "bob"):
    client = app.test_client()
    page = client.get("/signin").data
    t = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
    assert client.post("/signin", data={"username": user, "password": PASSWORD, "csrf_token": t}).status_code == 303
    return client


def test_web_page_of_a_clip_shows_its_flagged_frames_and_evidence(scanned, db_url: str):
    from photocheck.web import create_app

    db, ids, _ = scanned
    add_user(db, "bob", PASSWORD, actor="admin")
    app = create_app(db_url, secret_key=b"k" * 32, redact_dir=config.data_dir() / "redacted")
    client = _client(app)
    pid = ids["walk.mp4"]
    page = client.get(f"/photos/{pid}").get_data(as_text=True)
    assert "cannot be read" not in page
    frames = re.findall(r'<img alt="frame at ([\d.]+) s of clip %d"\s+src="([^"]+)">(.*?)</div>\s*'
                        r'<p class="frame-time">' % pid, page, re.S)
    with db.session() as s:
        listed = s.scalars(select(Face).where(Face.photo_id == pid, Face.status == "listed")).one()
        t, face_id = listed.time_s, listed.id
    # The listed face's frame first, with that face boxed on it, and when it is in the clip.
    assert frames and frames[0][0] == f"{t:.2f}" and f"at {t:.2f} s of 4.0 s" in page
    assert 'class="box listed' in frames[0][2] and "D0001" in frames[0][2]
    r = client.get(frames[0][1].replace("&amp;", "&"))
    assert r.status_code == 200 and r.data[:2] == b"\xff\xd8"
    assert client.get(f"/photos/{pid}/frame.jpg?t=99").status_code == 404  # past the clip's end
    crop = client.get(f"/faces/{face_id}/crop.jpg")  # the evidence crop, cut from that frame
    assert crop.status_code == 200 and crop.data[:2] == b"\xff\xd8"
    assert client.get(f"/photos/{pid}/image.jpg").status_code == 200  # contact-sheet picture
    sheet = client.get("/scans/1/sheet?state=all").get_data(as_text=True)
    assert f"/photos/{pid}/image.jpg" in sheet
    red = client.get(f"/photos/{pid}/redact").get_data(as_text=True)
    assert 'id="clip-note"' in red and 'id="redact-error"' not in red
    assert client.get(f"/photos/{pid}/preview.jpg").data[:2] == b"\xff\xd8"
    # Decisions work as for photos: rejecting the clip from its page.
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post(f"/photos/{pid}/sign", data={"decision": "reject", "version": version, "csrf_token": token},
                    follow_redirects=True)
    assert "Signed" in r.get_data(as_text=True)
    with db.session() as s:
        assert s.get(Photo, pid).signoff_state == "rejected"
