"""Screening video clips: sampled frames judged by the photo rules, faces tracked, one verdict.

A clip (MP4, MOV incl. iPhone HEVC, M4V, WebM/Matroska, AVI; found by its content) is decoded
with PyAV (FFmpeg inside its wheel) one frame at a time. A frame is screened every
[video] sample_interval_s of clip time, and also when the picture changed since the last screened
frame (a cut, a fast pan). Each screened frame goes through the photo path unchanged
(pipeline.detect_decoded + pipeline.judge_photo), so every face is judged by the same rules as in a
photo. Faces of one person across screened frames form one track, reported as one face (its worst
sighting, with time_s). The clip's verdict is the worst of its frames: blocked > review > clear.

Safety: a clip that cannot be decoded to its end, is truncated, has no video, no frames, or is
beyond the [video] limits (duration, frame size, frame rate) is `error` with a reason, never clear.
Memory: one decoded frame at a time plus small per-track data, whatever the clip's length.
"""
from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from photocheck.engine import box_iou
from photocheck.images import file_sha256
from photocheck.mediafiles import VIDEO_EXTENSIONS, sniff_format, sniff_video
from photocheck.pipeline import detect_decoded, error_result, judge_photo
from photocheck.results import FaceResult, FaceStatus, PhotoResult, Verdict, worst
from photocheck.screening import ReferenceSet, photo_verdict
from photocheck.worker import release_memory

# Container kind (sniff_video) -> the one FFmpeg demuxer allowed to open it: no format guessing.
_DEMUXERS = {"MP4": "mov", "MOV": "mov", "M4V": "mov", "WEBM": "matroska", "MKV": "matroska", "AVI": "avi"}

_FACE_SEVERITY = {FaceStatus.NO_MATCH: 0, FaceStatus.UNPROTECTED: 1, FaceStatus.TOO_SMALL: 2,
                  FaceStatus.UNCERTAIN: 3, FaceStatus.LISTED: 4}
THUMB_SIZE = (32, 18)  # grey thumbnail for scene changes (width, height)
# Copied sound may start this much before the first frame: decoders need the encoder's priming
# stored there (AAC, Opus: a few tens of ms); the player skips it.
_PRIMING_S = 0.1


class VideoError(Exception):
    """The clip cannot be screened completely; str(error) is the human reason."""


def media_kind(path: str | os.PathLike) -> str | None:
    """"photo", "video" or None, from the file's content: a JPEG named .mp4 is a photo, a clip
    named .jpg is a video. None: neither (or unreadable); the caller decides by extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    if sniff_format(head):
        return "photo"
    if sniff_video(head):
        return "video"
    return None


def is_clip(path: str | os.PathLike) -> bool:
    """Screen this file as a clip? By content first; a file of neither kind by its extension
    (so a damaged "x.mp4" is reported as a clip that cannot be read)."""
    kind = media_kind(path)
    return kind == "video" or (kind is None and Path(path).suffix.lower() in VIDEO_EXTENSIONS)


def screen_clips(paths, references: ReferenceSet, thresholds, channel_refs, record, threads: int = 2) -> None:
    """Screen each clip in this process with one engine (loaded only if there are clips) and
    pass each result to record(result), which may return files to screen too. Clips run one at a time: each already keeps the cores
    busy (FFmpeg's decoder threads, onnxruntime's `threads`)."""
    from photocheck.engine import FaceEngine

    queue = deque(paths)
    if not queue:
        return
    engine = FaceEngine(thresholds.detector, threads=threads)
    while queue:
        result = screen_video(queue.popleft(), engine, references, thresholds, channel_refs)
        release_memory()
        queue.extend(record(result) or ())  # copies of a clip that changed meanwhile: screened themselves


@dataclass
class _Track:
    """One person's faces across screened frames."""
    box: tuple
    last_t: float
    first_t: float
    encoding: np.ndarray | None
    student: str | None          # the listed student this track was identified as, if any
    worst: FaceResult            # the sighting reported (worst status; closest to a listed student)
    sightings: int = 1


@dataclass
class _Tracker:
    settings: object  # VideoSettings
    tracks: list[_Track] = field(default_factory=list)  # every track, for the report
    active: list[_Track] = field(default_factory=list)  # seen within track_max_gap_s: linkable

    def add(self, t: float, faces: list[FaceResult], encodings: list[np.ndarray | None]) -> None:
        st = self.settings
        live = []
        for tr in self.active:
            if t - tr.last_t <= st.track_max_gap_s:
                live.append(tr)
            else:
                tr.encoding = None  # ended: only its reported face is kept (memory stays small)
        pairs = []  # (rank, track index, face index): encoding links first, then overlap links
        for i, (f, enc) in enumerate(zip(faces, encodings)):
            for k, tr in enumerate(live):
                if f.student_id and tr.student and f.student_id != tr.student:
                    continue  # two different listed students are never one track
                if enc is not None and tr.encoding is not None:
                    d = float(np.linalg.norm(enc - tr.encoding))
                    if d <= st.track_max_distance:
                        pairs.append((d, k, i))
                    continue  # encodings disagree: different people, even if the boxes overlap
                iou = box_iou(f.box, tr.box)
                if iou >= st.track_min_iou:
                    pairs.append((2.0 - iou, k, i))
        used_t, used_f = set(), set()
        for _, k, i in sorted(pairs):
            if k in used_t or i in used_f:
                continue
            used_t.add(k)
            used_f.add(i)
            self._extend(live[k], t, faces[i], encodings[i])
        for i, (f, enc) in enumerate(zip(faces, encodings)):
            if i not in used_f:
                tr = _Track(f.box, t, t, enc, f.student_id, _with_time(f, t))
                self.tracks.append(tr)
                live.append(tr)
        self.active = live

    @staticmethod
    def _extend(tr: _Track, t: float, f: FaceResult, enc: np.ndarray | None) -> None:
        tr.box, tr.last_t, tr.sightings = f.box, t, tr.sightings + 1
        if enc is not None:
            tr.encoding = enc
        tr.student = tr.student or f.student_id
        if _face_key(f) > _face_key(tr.worst):
            tr.worst = _with_time(f, t)

    def faces(self) -> list[FaceResult]:
        out = []
        for tr in self.tracks:
            f = tr.worst
            seen = (f"seen {tr.first_t:.2f}-{tr.last_t:.2f} s in {tr.sightings} screened frames"
                    if tr.sightings > 1 else f"seen at {tr.first_t:.2f} s")
            f.reason = f"{f.reason}; {seen}" if f.reason else seen
            out.append(f)
        return sorted(out, key=lambda f: (f.time_s, f.box))


def _face_key(f: FaceResult) -> tuple:
    """Worse sightings sort higher: status first, then closeness to a listed student."""
    return _FACE_SEVERITY[f.status], -(f.distance if f.distance is not None else 9.0)


def _with_time(f: FaceResult, t: float) -> FaceResult:
    f.time_s = round(t, 3)
    return f


class _KeepEncodings:
    """The engine as judge_photo sees it, keeping the encodings it computes (for tracking)."""

    def __init__(self, engine):
        self._engine = engine
        self.encodings: list = []

    def encode_crops(self, crops):
        self.encodings = self._engine.encode_crops(crops)
        return self.encodings

    def __getattr__(self, name):
        return getattr(self._engine, name)


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # av.time_base
    return None


def _upright(frame) -> np.ndarray:
    """The frame as an upright H x W x 3 uint8 RGB array (its display rotation applied)."""
    rgb = frame.to_ndarray(format="rgb24")
    k = round((frame.rotation or 0) / 90) % 4  # counter-clockwise degrees, as FFmpeg's display matrix
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _open(path: Path, settings):
    """(container, video stream, declared duration) after the checks that need no decoding."""
    import av

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise VideoError(f"cannot read file: {exc.strerror or exc}") from None
    kind = sniff_video(head)
    if kind is None:
        photo = sniff_format(head)
        raise VideoError(f"not a video clip: the content is a {photo} image" if photo else
                         "not a video clip: not an MP4, MOV, M4V, WebM, Matroska or AVI file")
    try:
        container = av.open(str(path), "r", format=_DEMUXERS[kind], metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"cannot open {kind} clip (damaged or truncated?): {exc}") from None
    try:
        still = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
        videos = [v for v in container.streams.video if not v.disposition & still]  # not cover art
        if not videos:
            raise VideoError(f"{kind} file has no video stream")
        if len(videos) > 1:  # screening one would leave the others unlooked at
            raise VideoError(f"{kind} file has {len(videos)} video streams; only single-stream clips are screened")
        stream = videos[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > settings.max_frame_pixels:
            raise VideoError(f"frame size {w}x{h} is beyond the limit of {settings.max_frame_pixels:,} pixels")
        declared = _declared_duration(container, stream)
        if declared is not None and declared > settings.max_duration_s:
            raise VideoError(f"clip declares {declared / 3600:.1f} h, beyond the limit of "
                             f"{settings.max_duration_s / 3600:g} h")
        stream.thread_type = "AUTO"
        # Stop at damage the decoder notices instead of concealing it (H.264, MPEG-4 Part 2): a
        # concealed frame could hide a face. HEVC and VP9 conceal regardless; truncation and
        # corrupt-frame flags are checked in _screen_frames.
        stream.codec_context.options = {"err_detect": "explode"}
        return container, stream, declared
    except BaseException:
        container.close()
        raise


class ClipFrames:
    """Every decoded frame of a clip with its time, checked against the [video] limits.

    Iterating yields (seconds from the first frame, av.VideoFrame) in decode order. A frame without
    a timestamp follows the latest one by 1/frame rate; a timestamp before the first frame's counts
    as 0. Raises VideoError for damage, a limit passed, or no frame at all. After iterating: `count`
    (frames decoded), `decoded_s` (from the first frame to the end of the latest one), `declared_s`
    (the header's duration or None), `rate` (frames per second).

    `sound` (clip copies): given the clip's first audio stream (`sound.start(stream)`) before any
    frame, then its packets undecoded (`sound.packet(packet)`), timed from the first frame like the
    frames (sound from before it is left out, but for the encoder's priming)."""

    def __init__(self, path: str | os.PathLike, settings, sound=None):
        self.path, self.settings, self.sound = Path(path), settings, sound
        self.count, self.decoded_s, self.declared_s, self.rate = 0, 0.0, None, 30.0

    def __iter__(self):
        import av

        container, stream, self.declared_s = _open(self.path, self.settings)
        self.rate = float(stream.average_rate or stream.guessed_rate or 30)
        audio = container.streams.audio[0] if self.sound is not None and container.streams.audio else None
        self.count, self.decoded_s, self._t0, self._t_latest = 0, 0.0, None, None
        held: list = []  # sound read before the first frame's time is known
        try:
            if audio is not None:
                self.sound.start(audio)
            for packet in container.demux(stream, *([audio] if audio is not None else [])):
                if audio is None or packet.stream_index != audio.index:
                    yield from self._timed(packet.decode(), held)
                elif packet.pts is not None and packet.size:  # not the end-of-stream marker
                    held.append(packet)
                    if self._t0 is not None:
                        self._pass_sound(held)
        except av.FFmpegError as exc:
            raise VideoError(f"cannot decode clip after {self.count} frames (damaged or truncated?): {exc}") from None
        finally:
            container.close()
        if self.count == 0:
            raise VideoError("no video frames could be decoded")

    def _timed(self, frames, held: list):
        st, rate = self.settings, self.rate
        for frame in frames:
            n = self.count = self.count + 1
            t = frame.time
            if t is None:
                t = (self._t_latest + 1 / rate) if self._t_latest is not None else 0.0
            t0 = self._t0 = t if self._t0 is None else self._t0
            self._t_latest = t if self._t_latest is None else max(t, self._t_latest)
            self.decoded_s = self._t_latest - t0 + 1 / rate
            rel = max(0.0, t - t0)
            if frame.width * frame.height > st.max_frame_pixels:
                raise VideoError(f"frame at {rel:.2f} s is {frame.width}x{frame.height}, beyond the limit "
                                 f"of {st.max_frame_pixels:,} pixels")
            if rel > st.max_duration_s:
                raise VideoError(f"clip runs past {st.max_duration_s / 3600:g} h (the limit)")
            if n > st.max_fps * (rel + 1):
                raise VideoError(f"{n} frames in the first {rel:.2f} s: absurd timestamps (limit {st.max_fps:g}/s)")
            if frame.is_corrupt:
                raise VideoError(f"damaged frame at {rel:.2f} s")
            if held:
                self._pass_sound(held)
            yield rel, frame

    def _pass_sound(self, held: list) -> None:
        """Hand the held sound packets on, moved to count from the first frame like the frames;
        sound ending more than _PRIMING_S before it is left out."""
        for packet in held:
            shift = round(self._t0 / packet.time_base)
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            if (packet.pts + (packet.duration or 0)) * packet.time_base > -_PRIMING_S:
                self.sound.packet(packet)
        held.clear()


def thumbnail(frame) -> np.ndarray:
    """The frame's small grey thumbnail (THUMB_SIZE) that scene changes are measured on."""
    return frame.reformat(width=THUMB_SIZE[0], height=THUMB_SIZE[1], format="gray",
                          interpolation="AREA").to_ndarray().astype(np.int16)


def _screen_frames(path: Path, engine, references, thresholds, channel_refs, sha256):
    """Decode the clip, screen the sampled frames. Returns (frame results, tracker, duration,
    upright size, frames decoded). Raises VideoError."""
    st = thresholds.video
    channels = list(channel_refs or {})
    clip = ClipFrames(path, st)
    tracker = _Tracker(st)
    frame_results: list[tuple[float, PhotoResult]] = []
    last_thumb = None
    next_sample = last_sample = 0.0
    size = None
    for rel, frame in clip:
        thumb = thumbnail(frame)
        due = rel >= next_sample - 1e-6
        changed = (last_thumb is not None and rel - last_sample >= st.scene_min_gap_s
                   and float(np.abs(thumb - last_thumb).mean()) > st.scene_change_diff)
        if not (due or changed):
            continue
        last_thumb, last_sample = thumb, rel
        next_sample = rel + st.sample_interval_s
        rgb = _upright(frame)
        del frame
        size = (rgb.shape[1], rgb.shape[0])
        img = SimpleNamespace(view=rgb, sha256=sha256, width=size[0], height=size[1])
        det = detect_decoded(path, img, engine, channels)
        del rgb, img
        keep = _KeepEncodings(engine)
        res = judge_photo(det, keep, references, thresholds, channel_refs)
        if res.verdict is Verdict.ERROR:
            raise VideoError(f"frame at {rel:.2f} s: {res.error}")
        by_box = {tuple(int(v) for v in d.box): e for d, e in zip(det.detections, keep.encodings)}
        tracker.add(rel, res.faces, [by_box.get(tuple(f.box)) for f in res.faces])
        res.faces = []  # the tracks hold them
        frame_results.append((rel, res))
        release_memory()
    decoded, declared = clip.decoded_s, clip.declared_s
    if declared is not None and decoded < declared - st.truncation_tolerance_s:
        raise VideoError(f"truncated or damaged: video decodes to {decoded:.2f} s of the {declared:.2f} s declared")
    return frame_results, tracker, round(max(decoded, declared or 0.0), 3), size, clip.count


def screen_video(path: str | os.PathLike, engine, references: ReferenceSet, thresholds,
                 channel_refs: dict[str, ReferenceSet] | None = None) -> PhotoResult:
    """Screen one clip: a PhotoResult with kind "video", duration_s, and one face per track
    (time_s = when that sighting is). Never raises: failures become `error` with a reason.

    Same arguments as pipeline.screen_photo; `thresholds` needs its [video] section."""
    path = Path(path)
    channels = list(channel_refs or {})
    sha256 = None
    try:
        sha256 = file_sha256(path)
        frames, tracker, duration, size, n = _screen_frames(path, engine, references, thresholds,
                                                            channel_refs, sha256)
    except VideoError as exc:
        return error_result(path, channels, str(exc), sha256=sha256, kind="video")
    except MemoryError:
        return error_result(path, channels, "clip too large to decode in memory", sha256=sha256, kind="video")
    except Exception as exc:  # a decoder bug must not turn into "no faces"
        return error_result(path, channels, f"cannot screen clip: {type(exc).__name__}: {exc}",
                            sha256=sha256, kind="video")
    faces = tracker.faces()
    verdict, reasons = photo_verdict(faces)
    # A frame worse than the tracks cannot happen (tracks keep their worst face); stay safe.
    verdict = worst(verdict, *(r.verdict for _, r in frames))
    channel_verdicts = {ch: worst(*(r.channel_verdicts.get(ch, Verdict.ERROR) for _, r in frames))
                        for ch in channels}
    if not faces:
        reasons = ["no faces found in any screened frame"]
    reasons.append(f"{len(frames)} frames screened of {n} ({duration:.1f} s clip; every "
                   f"{thresholds.video.sample_interval_s:g} s and at scene changes)")
    return PhotoResult(path=str(path), verdict=verdict, reasons=reasons, faces=faces, sha256=sha256,
                       width=size[0] if size else None, height=size[1] if size else None,
                       channel_verdicts=channel_verdicts, kind="video", duration_s=duration)


def frame_at(path: str | os.PathLike, time_s: float, max_side: int | None = None) -> np.ndarray:
    """The upright RGB frame shown at `time_s` seconds from the clip's start, at most max_side
    on its long side (for reports: evidence is read again from the clip, never kept in memory).
    Seeks to the key frame before it, so a frame late in a long clip is quick. Raises VideoError."""
    import av

    from photocheck.thresholds import load_thresholds

    container, stream, _ = _open(Path(path), load_thresholds().video)
    try:
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        target = start + max(0.0, time_s)
        if time_s > 1 and tb:
            container.seek(int(target / tb), stream=stream, backward=True)
        best = None
        for frame in container.decode(stream):
            if best is not None and frame.time is not None and frame.time > target + 1e-3:
                break
            best = frame
        if best is None:
            raise VideoError("no video frames could be decoded")
        rgb = _upright(best)
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode clip: {exc}") from None
    finally:
        container.close()
    if max_side and max(rgb.shape[:2]) > max_side:
        from PIL import Image

        im = Image.fromarray(rgb)
        im.thumbnail((max_side, max_side))
        rgb = np.asarray(im)
    return rgb
