"""Video clips screened end to end: clips made here with PyAV from real faces, the real engine, and
references enrolled in a real database (the demo roster: D0001 is Joseph Biden)."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from photocheck.db import open_database
from photocheck.engine import FaceEngine
from photocheck.model_files import model_info
from photocheck.results import FaceStatus, Verdict
from photocheck.students import load_channel_references
from photocheck.thresholds import ThresholdsError, load_thresholds
from photocheck.video import media_kind, screen_video, sniff_video
from tests.helpers import FACES, REPO, load_report

SAMPLES = REPO / "sample_images"
W, H = 640, 360


@pytest.fixture(scope="module")
def th():
    return load_thresholds()


@pytest.fixture(scope="module")
def engine(th) -> FaceEngine:
    return FaceEngine(th.detector)


@pytest.fixture
def refs(cli, demo_copy: Path, db_url: str, th):
    """(strictest ReferenceSet, {"web": ReferenceSet}) read back from a database with D0001 enrolled."""
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    model = model_info(th.detector)
    sets = load_channel_references(open_database(db_url), model["encoder"]["name"], model["encoder"]["version"],
                                   [None, "web"])
    assert sets[None].student_ids == ["D0001"]
    return sets[None], {"web": sets["web"]}


def screen(clip: Path, engine, th, refs):
    return screen_video(clip, engine, refs[0], th, refs[1])


def face_tile(path: Path, box: tuple[int, int, int, int], face_px: int = 110) -> np.ndarray:
    """The face in `box` (top, right, bottom, left) with a margin, scaled so the face is face_px wide."""
    t, r, b, l = box
    m = (r - l) * 0.6
    with Image.open(path) as im:
        im = im.convert("RGB").crop((int(l - m), int(t - m), int(r + m), int(b + m)))
        k = face_px / (r - l)
        return np.asarray(im.resize((round(im.width * k), round(im.height * k)), Image.Resampling.LANCZOS))


BIDEN = (SAMPLES / "biden1.jpg", (233, 738, 544, 427))   # the listed student (reference: biden2.jpg)
OBAMA = (SAMPLES / "obama1.jpg", (112, 638, 405, 345))   # not on the roster


def _tone(stream, seconds: float, container) -> None:
    stream.metadata["title"] = "Emma Smith speaking"
    fmt, n = stream.codec_context.format.name, stream.codec_context.frame_size or 1024
    for start in range(0, round(seconds * 16000), n):
        x = 0.3 * np.sin(2 * np.pi * 440 * (start + np.arange(n)) / 16000)
        a = (x * 32000).astype(np.int16) if fmt.startswith("s16") else x.astype(np.float32)
        f = av.AudioFrame.from_ndarray(a[None, :], format=fmt, layout="mono")
        f.sample_rate, f.pts = 16000, start
        container.mux(stream.encode(f))
    container.mux(stream.encode())


def backdrop(i: int) -> np.ndarray:
    """A moving gradient, so frames differ a little like real footage."""
    x = np.linspace(0, 1, W)[None, :, None]
    y = np.linspace(0, 1, H)[:, None, None]
    a = 60 + 80 * x + 40 * y + 10 * np.sin(i / 5 + x * 6)
    return np.broadcast_to(a * np.array([1.0, 0.9, 0.8]), (H, W, 3)).astype(np.uint8).copy()


def make_clip(path: Path, scenes, *, seconds: float, fps: int = 25, fmt: str = "mp4", codec: str = "libx264",
              rotation: int | None = None, options: dict | None = None, tags: dict | None = None,
              sound: str | None = None) -> Path:
    """A clip of `seconds` with each (tile, x, y, start_s, end_s) of `scenes` pasted while on screen;
    x may be a function of the time (a face moving across). rotation: stored sideways (turned
    clockwise) with a display rotation that turns it upright. tags: container metadata. sound: an
    audio codec for a tone over the whole clip (its stream titled with a child's name)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        c.metadata.update(tags or {})
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = (H, W) if rotation else (W, H)
        s.pix_fmt = "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        if sound:
            _tone(c.add_stream(sound, rate=16000, layout="mono"), seconds, c)
        for i in range(round(seconds * fps)):
            a = backdrop(i)
            for tile, x, y, t0, t1 in scenes:
                if t0 <= i / fps < t1:
                    x = round(x(i / fps)) if callable(x) else x
                    a[y:y + tile.shape[0], x:x + tile.shape[1]] = tile[:H - y, :W - x]
            if rotation:
                a = np.rot90(a, -1)  # stored turned clockwise; displayed turned back
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_listed_student_on_screen_for_one_second_is_blocked(tmp_path, engine, th, refs):
    biden, obama = face_tile(*BIDEN), face_tile(*OBAMA)
    clip = make_clip(tmp_path / "concert.mp4", [(obama, 40, 60, 0, 5), (biden, 380, 70, 2.0, 3.0)], seconds=5)
    r = screen(clip, engine, th, refs)
    assert r.kind == "video" and r.verdict is Verdict.BLOCKED, r.reasons
    assert r.channel_verdicts == {"web": Verdict.BLOCKED}
    assert abs(r.duration_s - 5.0) < 0.1 and (r.width, r.height) == (W, H)
    listed = [f for f in r.faces if f.status is FaceStatus.LISTED]
    assert [f.student_id for f in listed] == ["D0001"]
    assert 2.0 <= listed[0].time_s < 3.0
    assert listed[0].box[3] >= 380  # on the right, where the listed student was pasted
    # The stranger on screen all along is one tracked face, not one per screened frame.
    others = [f for f in r.faces if f.status is not FaceStatus.LISTED]
    assert len(others) == 1 and others[0].status is FaceStatus.NO_MATCH and others[0].box[1] < 380
    assert "screened" in others[0].reason


@pytest.mark.skipif(not (FACES / "people").is_dir(), reason="../shared/faces is not present")
def test_clip_without_listed_students_is_clear(tmp_path, engine, th, refs):
    kit = face_tile(FACES / "people/kit_harington/kit3.jpg", (163, 464, 355, 272))
    obama = face_tile(*OBAMA)
    clip = make_clip(tmp_path / "game.webm", [(kit, 60, 80, 0.5, 2.5), (obama, 360, 60, 1.0, 3.0)],
                     seconds=3, fmt="webm", codec="libvpx-vp9")
    assert sniff_video(clip.read_bytes()[:64]) == "WEBM"
    r = screen(clip, engine, th, refs)
    assert r.verdict is Verdict.CLEAR, r.reasons
    assert sorted(f.status for f in r.faces) == [FaceStatus.NO_MATCH] * 2
    left, right = sorted(r.faces, key=lambda f: f.box[3])
    assert 0.5 <= left.time_s < 2.5 and 1.0 <= right.time_s < 3.0  # when each was on screen


def test_scene_cut_between_samples_is_screened(tmp_path, engine, th, refs):
    """A listed student shown for 0.2 s after a cut, between two regular samples (here every 0.5 s)."""
    cut = np.full((H, W, 3), 200, np.uint8)
    cut[40:40 + 300, 200:200 + 240] = 30  # another scene: a different picture altogether
    tile = face_tile(*BIDEN)
    clip = make_clip(tmp_path / "cut.mp4", [(cut, 0, 0, 0.6, 0.8), (tile, 250, 60, 0.6, 0.8)], seconds=1.5)
    sparse = dataclasses.replace(th, video=dataclasses.replace(th.video, sample_interval_s=0.5))
    r = screen(clip, engine, sparse, refs)
    assert r.verdict is Verdict.BLOCKED, r.reasons
    (f,) = [f for f in r.faces if f.status is FaceStatus.LISTED]
    assert 0.6 <= f.time_s < 0.8  # regular samples fall at 0, 0.52 and 1.04 s


def test_iphone_style_hevc_mov_is_turned_upright(tmp_path, engine, th, refs):
    """HEVC in a QuickTime .mov stored sideways with a display rotation, as phones record portrait."""
    clip = make_clip(tmp_path / "IMG_0001.MOV", [(face_tile(*BIDEN), 200, 40, 0.5, 1.5)], seconds=2,
                     fmt="mov", codec="libx265", rotation=90)
    assert sniff_video(clip.read_bytes()[:64]) == "MOV"
    r = screen(clip, engine, th, refs)
    assert r.verdict is Verdict.BLOCKED, r.reasons
    assert (r.width, r.height) == (W, H)  # upright, as displayed
    (f,) = r.faces
    assert f.student_id == "D0001" and 0.5 <= f.time_s < 1.5 and f.box[3] >= 180


def test_truncated_clips_are_errors(tmp_path, engine, th, refs):
    plain = make_clip(tmp_path / "plain.mp4", [], seconds=3)  # index (moov) at the end
    fast = make_clip(tmp_path / "fast.mp4", [], seconds=3, options={"movflags": "faststart"})  # at the start
    for src in (plain, fast):
        cut = tmp_path / f"cut_{src.name}"
        cut.write_bytes(src.read_bytes()[: src.stat().st_size * 6 // 10])
        r = screen(cut, engine, th, refs)
        assert r.verdict is Verdict.ERROR and r.kind == "video", (src.name, r.reasons)
        assert r.channel_verdicts == {"web": Verdict.ERROR}
        assert "truncated" in r.error, r.error
    # Damage in the middle of the picture data: the decoder's complaint makes it an error too.
    data = bytearray(fast.read_bytes())
    data[len(data) // 2:len(data) // 2 + 300] = bytes(range(256)) + bytes(44)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    r = screen(damaged, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "damaged" in r.error, r.error


def test_files_that_are_not_clips(tmp_path, engine, th, refs):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all, just text in a file named like one\n" * 20)
    r = screen(text, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "not a video clip" in r.error
    assert media_kind(text) is None
    # A photo named like a clip is a photo (found by content), never decoded as a one-frame video.
    photo = tmp_path / "photo.mp4"
    photo.write_bytes((SAMPLES / "biden1.jpg").read_bytes())
    assert media_kind(photo) == "photo"
    assert screen(photo, engine, th, refs).verdict is Verdict.ERROR
    # Audio only: an MP4 without a video stream.
    audio = tmp_path / "song.mp4"
    with av.open(str(audio), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    r = screen(audio, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "no video stream" in r.error
    # Two video streams (e.g. two camera angles): screening one would leave the other unseen.
    two = tmp_path / "two.mp4"
    with av.open(str(two), "w", format="mp4") as c:
        streams = [c.add_stream("libx264", rate=25) for _ in range(2)]
        for s in streams:
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(5):
            for s in streams:
                f = av.VideoFrame.from_ndarray(backdrop(i), format="rgb24")
                f.pts = i
                for p in s.encode(f):
                    c.mux(p)
        for s in streams:
            for p in s.encode():
                c.mux(p)
    r = screen(two, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "2 video streams" in r.error


def test_frame_times_count_from_the_first_frame(tmp_path, th):
    """Screening and clip copies share one frame loop (video.ClipFrames): times start at the
    first frame's (here 2 s in), a repeated timestamp is kept, and the decoded length is known."""
    from photocheck.clipcopy import decoded_frames
    from photocheck.video import ClipFrames

    p = tmp_path / "late.mkv"
    with av.open(str(p), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i, pts in enumerate([50, 51, 52, 52, 54]):
            f = av.VideoFrame.from_ndarray(backdrop(i), format="rgb24")
            f.pts, f.time_base = pts, Fraction(1, 25)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    clip = ClipFrames(p, th.video)
    times = [round(t, 3) for t, _ in clip]
    assert times == [0.0, 0.04, 0.08, 0.08, 0.16] and clip.count == 5 and round(clip.decoded_s, 3) == 0.2
    assert [round(t, 3) for t, _, _ in decoded_frames(p, th.video)] == times


def test_absurd_clips_are_errors(tmp_path, engine, th, refs):
    # A 10-hour clip: three frames, the last ten hours in (tiny file, absurd length).
    long = tmp_path / "ten_hours.mp4"
    with av.open(str(long), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.time_base = Fraction(1, 25)
        for pts in (0, 1, 25 * 36000):
            f = av.VideoFrame.from_ndarray(backdrop(pts), format="rgb24")
            f.pts = pts
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    r = screen(long, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "limit" in r.error, r.reasons

    # A 16K frame: an AVI of raw frames whose header claims 15360 x 8640.
    small = make_clip(tmp_path / "small.avi", [], seconds=0.2, fmt="avi", codec="rawvideo")
    data = bytearray(small.read_bytes())
    strf = data.index(b"strf")
    struct.pack_into("<ii", data, strf + 12, 15360, 8640)  # BITMAPINFOHEADER biWidth, biHeight
    huge = tmp_path / "huge.avi"
    huge.write_bytes(bytes(data))
    r = screen(huge, engine, th, refs)
    assert r.verdict is Verdict.ERROR and "15360x8640" in r.error, r.reasons

    # Beyond the configured frame size: the limit comes from thresholds.toml.
    tight = dataclasses.replace(th, video=dataclasses.replace(th.video, max_frame_pixels=W * H - 1))
    r = screen(small, engine, tight, refs)
    assert r.verdict is Verdict.ERROR and f"{W}x{H}" in r.error


def test_sniffing_and_limits_in_thresholds(tmp_path):
    assert sniff_video(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1" + bytes(40)) == "MP4"
    assert sniff_video(b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(40)) == "MOV"
    assert sniff_video(b"\x00\x00\x00\x18ftypM4V \x00\x00\x00\x01M4V " + bytes(40)) == "M4V"
    assert sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(40)) == "AVI"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40)) is None  # a photo
    assert sniff_video(b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom" + bytes(40)) is None  # audio
    assert sniff_video((SAMPLES / "biden1.jpg").read_bytes()[:64]) is None
    # Sampling sparser than every 0.5 s could skip a person on screen for a second: refused.
    text = (REPO / "models" / "thresholds.toml").read_text()
    bad = tmp_path / "t.toml"
    bad.write_text(text.replace("sample_interval_s = 0.25", "sample_interval_s = 1.0"))
    with pytest.raises(ThresholdsError, match=r"\[video\]"):
        load_thresholds(bad)


@pytest.mark.backends("sqlite", "postgresql")
def test_scan_finds_clips_beside_photos(cli, demo_copy: Path, tmp_path: Path, backend):
    """`photocheck scan` screens clips found by content beside photos and stores kind, duration and
    time_s; a rescan reuses the stored clip result (scan cache) with the same facts."""
    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "post"
    batch.mkdir()
    (batch / "photo.jpg").write_bytes((SAMPLES / "obama1.jpg").read_bytes())
    make_clip(batch / "reel", [(face_tile(*BIDEN), 300, 60, 1.0, 2.0)], seconds=2.5)  # no extension: by content
    make_clip(batch / "empty.webm", [], seconds=1, fmt="webm", codec="libvpx-vp9")
    (batch / "broken.mp4").write_text("not a clip")
    (batch / "notes.txt").write_text("neither")
    for run in ("first", "cached"):
        report = tmp_path / f"{run}.json"
        cli("scan", batch, "--json", report, "--csv", report.with_suffix(".csv"), "--html",
            report.with_suffix(".html"), expect=1)
        items = {Path(im["path"]).name: im for im in load_report(report)["images"]}
        assert set(items) == {"photo.jpg", "reel", "empty.webm", "broken.mp4"}, run
        reel = items["reel"]
        assert (reel["kind"], reel["verdict"], reel["cached"]) == ("video", "blocked", run == "cached")
        assert abs(reel["duration_s"] - 2.5) < 0.1
        (face,) = [f for f in reel["faces"] if f["status"] == "listed"]
        assert face["student_id"] == "D0001" and 1.0 <= face["time_s"] < 2.0
        assert items["photo.jpg"]["kind"] == "photo" and "duration_s" not in items["photo.jpg"]
        assert "time_s" not in items["photo.jpg"]["faces"][0]
        assert (items["broken.mp4"]["kind"], items["broken.mp4"]["verdict"]) == ("video", "error")
        rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(
            report.with_suffix(".csv").read_text(encoding="utf-8-sig"), newline=""))}
        assert rows["reel"]["kind"] == "video" and f"D0001 at {face['time_s']:.2f} s" in rows["reel"]["flagged_times"]
    html = report.with_suffix(".html").read_text()
    assert f'alt="frame at {face["time_s"]:.2f} s of {batch / "reel"}"' in html  # the flagged frame itself
    assert f"D0001 at {face['time_s']:.2f} s" in html
    reel_id = max(i["photo_id"] for i in json.loads(cli("review", "list", "--json").output)
                  if Path(i["path"]).name == "reel")
    # A clear clip signed off is published as a clean MP4; the blocked one, not signed off, is refused.
    clip = max((i for i in json.loads(cli("review", "list", "--verdict", "clear", "--json").output)
                if Path(i["path"]).name == "empty.webm"), key=lambda i: i["photo_id"])  # the second scan's
    cli("review", "sign", clip["photo_id"], "--decision", "approve", "--as", "bob")
    dest = tmp_path / "web"
    out = cli("publish", "--channel", "web", "--to", dest, reel_id, clip["photo_id"], expect=1).output
    assert "not signed off" in out
    assert sorted(p.name for p in dest.glob("*")) == ["manifest.json", f"web-{clip['photo_id']:06d}.mp4"]


def test_recheck_screens_an_approved_clip_again(cli, demo_copy: Path, tmp_path: Path, db_url: str):
    """A student newly listed after a clip was approved: `recheck` screens the clip (as a clip)
    again, voids the sign-off and stores the new verdict with its times."""
    from sqlalchemy import select

    from photocheck.db.models import Photo

    cli("roster", "import", demo_copy / "roster" / "no_consent.csv")
    cli("enroll", demo_copy / "roster" / "photos")
    batch = tmp_path / "post"
    batch.mkdir()
    make_clip(batch / "reel.mp4", [(face_tile(*OBAMA), 100, 60, 0.5, 1.5)], seconds=2)
    cli("scan", batch)  # clear: exit 0
    db = open_database(db_url)
    with db.session() as s:
        pid = s.scalar(select(Photo.id))
    cli("review", "sign", pid, "--decision", "approve", "--as", "bob")
    roster = tmp_path / "new.csv"
    roster.write_text("student_id,first_name,last_name,campus,grade,opt_out\n"
                      "D0001,Joseph,Biden,Demo High School,12,all\nD0002,Barack,Obama,Demo,12,all\n")
    assert "1 approved photo(s) flagged for re-check" in cli("roster", "import", roster).output
    refs = tmp_path / "refs" / "D0002"
    refs.mkdir(parents=True)
    (refs / "obama3.jpg").write_bytes((SAMPLES / "obama3.jpg").read_bytes())
    cli("enroll", tmp_path / "refs")
    cli("recheck", expect=1)
    with db.session() as s:
        photo = s.get(Photo, pid)
        assert (photo.kind, photo.verdict, photo.signoff_state) == ("video", "blocked", "pending")
        (face,) = photo.faces
        assert face.student_id == "D0002" and 0.5 <= face.time_s < 1.5
    db.dispose()


def test_tracker_links_one_person_and_keeps_people_apart(th):
    """Tracking rules on made-up encodings: the same person links wherever they move, overlapping
    boxes of different people do not, two listed students never share a track, and the track
    reports its worst sighting with that sighting's time."""
    from photocheck.results import FaceResult
    from photocheck.video import _Tracker

    a, b = np.zeros(128), np.full(128, 0.1)  # 1.13 apart: different people
    near_a = a + 0.01  # 0.11 from a: the same person

    def face(box, status=FaceStatus.NO_MATCH, sid=None, dist=0.9):
        return FaceResult(box=box, status=status, student_id=sid, distance=dist)

    tr = _Tracker(th.video)
    tr.add(0.0, [face((0, 100, 100, 0)), face((0, 300, 100, 200))], [a, b])
    # a moved across the frame (no overlap) and b moved onto a's old place (overlap, other encoding).
    tr.add(0.25, [face((0, 500, 100, 400), FaceStatus.UNCERTAIN, dist=0.6), face((0, 110, 100, 10))], [near_a, b])
    # Unencodable faces link by overlap.
    tr.add(0.5, [face((0, 505, 100, 405), FaceStatus.TOO_SMALL)], [None])
    assert len(tr.tracks) == 2
    first = tr.tracks[0]
    assert (first.sightings, first.worst.status, first.worst.time_s) == (3, FaceStatus.UNCERTAIN, 0.25)
    # Two listed students at the same place one after the other: two tracks.
    tr2 = _Tracker(th.video)
    tr2.add(0.0, [face((0, 100, 100, 0), FaceStatus.LISTED, "S1", 0.4)], [None])
    tr2.add(0.25, [face((0, 100, 100, 0), FaceStatus.LISTED, "S2", 0.4)], [None])
    assert [t.worst.student_id for t in tr2.tracks] == ["S1", "S2"]
    # A track not seen for longer than track_max_gap_s ends: a later face starts a new one.
    tr2.add(0.25 + th.video.track_max_gap_s + 0.5, [face((0, 100, 100, 0), FaceStatus.LISTED, "S2", 0.4)], [None])
    assert len(tr2.tracks) == 3 and len(tr2.active) == 1
