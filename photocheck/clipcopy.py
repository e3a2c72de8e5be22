"""Copies of clips: redacted (listed faces covered in every frame) and clean (no metadata), both
re-encoded with PyAV as H.264 MP4 from the decoded, upright frames.

Redaction runs two passes over the clip. The first detects and judges faces every
[redact] sample_interval_s of clip time (denser than screening) and at scene changes; a face that could be
a listed student is covered, and so is any face linked to one in the neighbouring detection
(the same person turning away). The second pass decodes every frame and covers, in each frame
between two detections, the padded boxes of both and the box moved along the way between them:
a face is covered in every frame, not only in the ones that were looked at.

What a copy keeps: the pictures, and the first sound track copied unchanged (not re-encoded) when
MP4 can hold its codec (AAC, MP3, Opus, ALAC, FLAC, AC-3 ...; otherwise it is left out and the
result says so). Container and stream tags (creation time, GPS, camera, titles), chapters,
subtitles and other tracks are not written.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from photocheck.video import ClipFrames, VideoError, _open, _upright, thumbnail

CRF = "18"              # x264 quality: visually lossless for review footage
TIME_BASE = Fraction(1, 1000)


@dataclass
class _Sample:
    t: float
    boxes: list                # (top, right, bottom, left) of every face found
    cover: list                # True where that face is covered


def decoded_frames(path: str | Path, settings, sound=None):
    """(seconds from the start, upright RGB array, scene thumbnail) of every frame, in order.
    Raises VideoError for a clip that cannot be decoded completely (video.ClipFrames: the same
    times and limits as screening). `sound`: a ClipWriter that copies the sound track."""
    for t, frame in ClipFrames(path, settings, sound):
        yield t, _upright(frame), thumbnail(frame)


def frame_rate(path: str | Path, settings) -> Fraction:
    container, stream, _ = _open(Path(path), settings)
    try:
        return Fraction(stream.average_rate or stream.guessed_rate or 30)
    finally:
        container.close()


class ClipWriter:
    """H.264 MP4 written to an open binary file, frame by frame, with no tags of any kind; the
    source's sound copied unchanged if it is passed to decoded_frames(..., sound=writer).
    `sound` says what became of it: None (the source has none), "copied" or why it was left out."""

    def __init__(self, fh, rate: Fraction):
        import av

        self._c = av.open(fh, "w", format="mp4", options={"fflags": "+bitexact"})
        self._c.metadata.clear()
        self._rate = rate
        self._s = None
        self._last = -1
        self._audio = None
        self._held: list = []  # sound packets read before the first frame (the file's header waits for it)
        self.sound: str | None = None

    def start(self, stream) -> None:
        """The source's sound track, before any frame or packet (video.ClipFrames calls it)."""
        try:
            self._audio = self._c.add_stream_from_template(stream)
        except ValueError:  # MP4 cannot hold this codec unchanged (e.g. Vorbis, some PCM)
            self.sound = f"left out ({stream.codec_context.name} cannot be copied into MP4 unchanged)"
            return
        self._audio.metadata.clear()
        self.sound = "copied"

    def packet(self, packet) -> None:
        """One sound packet, timed from the first frame."""
        if self._audio is None:
            return
        packet.stream = self._audio
        if self._s is None:
            self._held.append(packet)
        else:
            self._c.mux(packet)

    def add(self, t: float, rgb: np.ndarray) -> None:
        import av

        h, w = rgb.shape[:2]
        if h % 2 or w % 2:  # 4:2:0 needs even sides: one black row/column, never a cropped pixel
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))
        if self._s is None:
            s = self._c.add_stream("libx264", rate=self._rate, options={"crf": CRF, "preset": "veryfast"})
            s.width, s.height = rgb.shape[1], rgb.shape[0]
            s.pix_fmt = "yuv420p"
            s.codec_context.time_base = TIME_BASE
            s.codec_context.flags |= av.codec.context.Flags.bitexact
            s.metadata.clear()
            self._s = s
            for p in self._held:
                self._c.mux(p)
            self._held.clear()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self._last = max(self._last + 1, round(t / TIME_BASE))
        frame.pts, frame.time_base = self._last, TIME_BASE
        for p in self._s.encode(frame):
            self._c.mux(p)

    def close(self) -> None:
        try:
            if self._s is not None:
                for p in self._s.encode():
                    self._c.mux(p)
        finally:
            self._c.close()


def write_clean_copy(source: str | Path, fh, settings, with_sound: bool = True) -> tuple[int, str | None]:
    """Re-encode `source`'s pictures into `fh` (an open binary file) without metadata, its sound
    copied unchanged where MP4 can hold it unless `with_sound` is false: (frames written, ClipWriter.sound)."""
    out = ClipWriter(fh, frame_rate(source, settings))
    n = 0
    try:
        for t, rgb, _ in decoded_frames(source, settings, out if with_sound else None):
            out.add(t, rgb)
            n += 1
    finally:
        out.close()
    return n, out.sound


def find_faces_to_cover(path: str | Path, engine, references, thresholds, cover_statuses) -> list[_Sample]:
    """Pass 1: faces detected every [redact] sample_interval_s and at scene changes, each marked to
    cover or not."""
    from photocheck.pipeline import detect_decoded, judge_photo
    from photocheck.worker import release_memory

    st, rs = thresholds.video, thresholds.redact
    samples: list[_Sample] = []
    next_due, last_t, last_thumb = 0.0, 0.0, None
    for t, rgb, thumb in decoded_frames(path, st):
        due = t >= next_due - 1e-6
        changed = (last_thumb is not None and t - last_t >= st.scene_min_gap_s
                   and float(np.abs(thumb - last_thumb).mean()) > st.scene_change_diff)
        if not (due or changed):
            continue
        next_due, last_t, last_thumb = t + rs.sample_interval_s, t, thumb
        img = SimpleNamespace(view=rgb, sha256=None, width=rgb.shape[1], height=rgb.shape[0])
        res = judge_photo(detect_decoded(Path(path), img, engine, []), engine, references, thresholds)
        if res.error:
            raise VideoError(f"frame at {t:.2f} s: {res.error}")
        samples.append(_Sample(t, [tuple(f.box) for f in res.faces],
                               [f.status.value in cover_statuses for f in res.faces]))
        release_memory()
    _link(samples, rs.link_iou)
    return samples


def _link(samples: list[_Sample], link_iou: float) -> None:
    """Cover faces overlapping a covered face of the neighbouring detection, until nothing changes
    (a listed student seen once stays covered while the detector keeps seeing them)."""
    from photocheck.engine import box_iou

    changed = True
    while changed:
        changed = False
        for i, s in enumerate(samples):
            for j in (i - 1, i + 1):
                if not 0 <= j < len(samples):
                    continue
                other = samples[j]
                for k, box in enumerate(s.boxes):
                    if not s.cover[k] and any(c and box_iou(box, b) >= link_iou
                                              for b, c in zip(other.boxes, other.cover)):
                        s.cover[k] = changed = True


def _pad(box, w: int, h: int, pad: float) -> tuple[int, int, int, int]:
    top, right, bottom, left = box
    p = max(right - left, bottom - top) * pad
    return (max(0, int(top - p)), min(w, int(np.ceil(right + p))), min(h, int(np.ceil(bottom + p))),
            max(0, int(left - p)))


def boxes_between(a: _Sample | None, b: _Sample | None, t: float, w: int, h: int, pad: float,
                  move_pad: float) -> list:
    """Padded boxes to cover in a frame at `t` between detections `a` and `b` (either may be None
    at the clip's ends): both detections' covered boxes held, plus each covered face moved
    linearly towards its nearest covered face in the other detection, padded by `move_pad` more."""
    mine = [bx for s in (a, b) if s for bx, c in zip(s.boxes, s.cover) if c]
    out = [_pad(bx, w, h, pad) for bx in mine]
    if a and b and b.t > a.t:
        k = min(1.0, max(0.0, (t - a.t) / (b.t - a.t)))
        later = [bx for bx, c in zip(b.boxes, b.cover) if c]
        for bx, c in zip(a.boxes, a.cover):
            if not c or not later:
                continue
            cy, cx = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2
            near = min(later, key=lambda o: ((o[0] + o[2]) / 2 - cy) ** 2 + ((o[1] + o[3]) / 2 - cx) ** 2)
            moved = tuple(p + (q - p) * k for p, q in zip(bx, near))
            out.append(_pad(moved, w, h, pad + move_pad))
    return out


def write_redacted(path: str | Path, fh, samples: list[_Sample], thresholds, cover) -> tuple[int, str | None]:
    """Pass 2: every frame of `path` with the boxes of `boxes_between` covered (`cover(rgb, boxes)`),
    written to `fh` with the sound as write_clean_copy; padding from [redact] pad and move_pad.
    Returns (frames written, ClipWriter.sound)."""
    st, rs = thresholds.video, thresholds.redact
    out = ClipWriter(fh, frame_rate(path, st))
    i, n = 0, 0
    try:
        for t, rgb, _ in decoded_frames(path, st, out):
            while i < len(samples) and samples[i].t <= t + 1e-6:
                i += 1
            a = samples[i - 1] if i > 0 else None
            b = samples[i] if i < len(samples) else None
            boxes = boxes_between(a, b, t, rgb.shape[1], rgb.shape[0], rs.pad, rs.move_pad)
            out.add(t, cover(rgb, boxes) if boxes else rgb)
            n += 1
    finally:
        out.close()
    return n, out.sound
