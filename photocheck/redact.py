"""Redaction: cover listed students' faces irreversibly, then prove it by scanning the result.

A light blur can be undone or still recognised by a face model, so faces are covered with a
solid fill (default) or a very coarse pixelation (at most [redact] pixel_blocks blocks across) over
a box padded on every side ([redact] pad in models/thresholds.toml) (hair, ears and chin identify people too). The redacted copy is then
screened again with the same engine and references; if any face still matches (or could match)
a listed student, the copy is deleted and the redaction refused.

Faces covered: every face identified as a listed student and every face that could be one
(the uncertain band). Redacted copies are written without any metadata.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from photocheck import audit, datadir
from photocheck.db import Database
from photocheck.db.models import Photo, Redaction, Scan
from photocheck.images import ImageError, file_sha256, load_image
from photocheck.results import REDACTION_STYLES, FaceStatus, Verdict
from photocheck.review import strict_in_photo

STYLES = REDACTION_STYLES
FILL = (0, 0, 0)
COVER_STATUSES = (FaceStatus.LISTED.value, FaceStatus.UNCERTAIN.value)
# What a clip's redacted copy says of its sound (clipcopy.ClipWriter.sound): nobody listens to it.
_SOUND = {None: "no sound", "copied": "sound copied unchanged (not checked: listen to it)"}


class RedactError(Exception):
    """The photo cannot be redacted (or the result failed verification); the message says why."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


@dataclass
class RedactResult:
    photo_id: int
    source: str
    ok: bool
    message: str
    output: str | None = None
    faces_covered: int = 0


def padded_box(box: tuple[int, int, int, int], width: int, height: int, pad: float) -> tuple[int, int, int, int]:
    """`box` grown by `pad` x its larger side on every side, within the photo."""
    top, right, bottom, left = box
    p = int(round(max(right - left, bottom - top) * pad))
    return max(0, top - p), min(width, right + p), min(height, bottom + p), max(0, left - p)


def cover(rgb: np.ndarray, boxes, style: str, pixel_blocks: int) -> np.ndarray:
    """A copy of `rgb` with each (already padded) box filled, or pixelated into at most
    `pixel_blocks` flat squares across."""
    out = rgb.copy()
    for top, right, bottom, left in boxes:
        region = out[top:bottom, left:right]
        if region.size == 0:
            continue
        if style == "fill":
            region[:] = FILL
        else:
            h, w = region.shape[:2]
            block = max(1, int(np.ceil(max(h, w) / pixel_blocks)))
            for y in range(0, h, block):
                for x in range(0, w, block):
                    cell = region[y:y + block, x:x + block]
                    cell[:] = cell.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    return out


def _checks(db: Database, pid: int, style: str) -> tuple[str, str, str, list]:
    """(path, sha256, kind, [(box, time_s)] of the faces to cover) of one photo or clip, or
    RedactError saying why not. Every rule that stops a redaction is here, so a preview refuses
    exactly what `redact` refuses."""
    if style not in STYLES:
        raise RedactError(f"unknown style {style!r} (choose fill or pixelate)")
    with db.session() as s:
        photo = s.get(Photo, pid)
        if photo is None:
            raise RedactError(f"no photo with id {pid}")
        path, sha = photo.path, photo.sha256
        faces = [((f.top, f.right, f.bottom, f.left), f.status, f.time_s) for f in photo.faces]
        strict = strict_in_photo(s, pid)
        scan_channel = s.get(Scan, photo.scan_id).channel
        kind = photo.kind
    what = "clip" if kind == "video" else "photo"
    if strict:
        raise RedactError(f"a student in this {what} must never be published (strict in the roster), "
                          "not even redacted: reject it instead", path)
    if scan_channel is not None:
        raise RedactError(f"this {what} was screened for {scan_channel} only; scan it again without "
                          "--channel so every listed student's face is known before redacting", path)
    to_cover = [(box, t) for box, status, t in faces if status in COVER_STATUSES]
    if not to_cover:
        raise RedactError("no listed (or possibly listed) face to cover; approve it as is instead", path)
    return path, sha, kind, to_cover


def _covered(db: Database, pid: int, style: str, settings=None,
             checked=None) -> tuple[str, str, list[tuple[int, int, int, int]], np.ndarray]:
    """(path, sha256, padded boxes, covered pixels) of one photo; of a clip, its first frame with a
    face to cover, covered where that face was found (the clip's copy covers every frame).
    `settings`: the [redact] thresholds (default: models/thresholds.toml's); `checked`: this
    photo's _checks() if the caller has it already."""
    path, sha, kind, to_cover = checked or _checks(db, pid, style)
    if settings is None:
        from photocheck.thresholds import load_thresholds

        settings = load_thresholds().redact
    if kind == "video":
        from photocheck.video import VideoError, frame_at

        if file_sha256(path) != sha:
            raise RedactError("the file has changed since it was scanned: scan it again first", path)
        t = min(t for _, t in to_cover if t is not None) if any(t is not None for _, t in to_cover) else 0.0
        try:
            rgb = frame_at(path, t)
        except VideoError as exc:
            raise RedactError(f"cannot read the clip: {exc}", path) from None
        h, w = rgb.shape[:2]
        boxes = [padded_box(b, w, h, settings.pad) for b, bt in to_cover if bt == t]
        return path, sha, boxes, cover(rgb, boxes, style, settings.pixel_blocks)
    try:
        img = load_image(path)
    except ImageError as exc:
        raise RedactError(f"cannot read the photo: {exc}", path) from None
    if img.sha256 != sha:
        raise RedactError("the file has changed since it was scanned: scan it again first", path)
    boxes = [padded_box(b, img.width, img.height, settings.pad) for b, _ in to_cover]
    return path, sha, boxes, cover(img.rgb, boxes, style, settings.pixel_blocks)


def preview(db: Database, photo_id: int, style: str = "fill") -> np.ndarray:
    """The covered pixels `redact` would write, without writing or recording anything.

    Not verified: only `redact` re-scans the copy, and only its verified copy can be signed off.
    """
    return _covered(db, photo_id, style)[3]


def redact(db: Database, photo_ids, out_dir: Path, *, actor: str, style: str = "fill", engine=None,
           thresholds=None) -> list[RedactResult]:
    """Redact each photo into `out_dir`; each result says whether a verified copy was recorded."""
    from photocheck.engine import FaceEngine
    from photocheck.model_files import model_info
    from photocheck.pipeline import screen_photo
    from photocheck.students import load_references
    from photocheck.thresholds import load_thresholds

    if style not in STYLES:
        raise RedactError(f"unknown style {style!r} (choose fill or pixelate)")
    datadir.make_dir(out_dir)
    thresholds = thresholds or load_thresholds()
    engine = engine or FaceEngine()
    enc = model_info()["encoder"]
    # Verified against every listed student, whatever the channel: a redacted copy may go anywhere.
    references = load_references(db, enc["name"], enc["version"])
    results = []
    for pid in photo_ids:
        try:
            checked = _checks(db, pid, style)  # the photo's one database read
            if checked[2] == "video":
                results.append(_redact_clip(db, pid, checked, out_dir, actor=actor, style=style, engine=engine,
                                            references=references, thresholds=thresholds))
                continue
            path, sha, boxes, redacted = _covered(db, pid, style, thresholds.redact, checked)
            target = out_dir / f"photo{pid}-redacted.jpg"
            tmp = target.with_name(f".{target.name}.tmp")
            with datadir.open_file(tmp) as fh:  # 0600 in the data folder
                Image.fromarray(redacted).save(fh, "JPEG", quality=92)  # pixels only: no EXIF/XMP/ICC
            check = _rescreened(screen_photo(tmp, engine, references, thresholds), tmp, path)
            tmp.replace(target)
            out_sha = file_sha256(target)
        except RedactError as exc:
            results.append(RedactResult(pid, exc.path or str(pid), False, str(exc)))
            continue
        with db.session(immediate=True) as s:
            row = Redaction(photo_id=pid, source_sha256=sha, path=str(target), sha256=out_sha, style=style,
                            faces_covered=len(boxes), created_by=actor)
            s.add(row)
            s.flush()
            audit.record(s, actor=actor, action="redact", photo_sha256=sha, photo_id=pid, redaction_id=row.id,
                         redacted_sha256=out_sha, style=style, faces_covered=len(boxes),
                         recheck=json.dumps({"faces": len(check.faces), "verdict": str(check.verdict)}))
        results.append(RedactResult(pid, path, True, f"{len(boxes)} face(s) covered ({style}); re-scan found no "
                                    "listed face", str(target), len(boxes)))
    return results


def _rescreened(check, tmp: Path, path: str):
    """`check` (the redacted copy `tmp` screened again) if it shows no listed or possibly listed
    face; otherwise `tmp` is deleted and RedactError says why."""
    still = [f for f in check.faces if f.status.value in COVER_STATUSES]
    if check.verdict is Verdict.ERROR or still:
        tmp.unlink(missing_ok=True)
        why = check.error or f"{len(still)} listed or possibly listed face(s) still found"
        raise RedactError(f"redaction refused: the re-scan of the redacted copy failed ({why}); "
                          "nothing was recorded", path)
    return check


def _redact_clip(db: Database, pid: int, checked: tuple, out_dir: Path, *, actor: str, style: str, engine,
                 references, thresholds) -> RedactResult:
    """A clip's redacted copy (clipcopy.py: listed faces found every [redact] sample_interval_s, covered in
    every frame, H.264 MP4 without metadata, sound copied unchanged), accepted only if screening it again with
    the same rules finds no listed (or possibly listed) face. `checked`: its _checks(). Raises RedactError."""
    from photocheck.clipcopy import find_faces_to_cover, write_redacted
    from photocheck.video import VideoError, screen_video

    path, sha, _, _ = checked
    if file_sha256(path) != sha:
        raise RedactError("the file has changed since it was scanned: scan it again first", path)
    target = out_dir / f"photo{pid}-redacted.mp4"
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        samples = find_faces_to_cover(path, engine, references, thresholds, COVER_STATUSES)
        with datadir.open_file(tmp) as fh:  # 0600 in the data folder
            rs = thresholds.redact
            frames, sound = write_redacted(path, fh, samples, thresholds,
                                    lambda rgb, boxes: cover(rgb, boxes, style, rs.pixel_blocks))
    except VideoError as exc:
        tmp.unlink(missing_ok=True)
        raise RedactError(f"cannot redact the clip: {exc}", path) from None
    except Exception as exc:  # an encoder failure: no copy, nothing recorded
        tmp.unlink(missing_ok=True)
        raise RedactError(f"cannot redact the clip: {type(exc).__name__}: {exc}", path) from None
    if file_sha256(path) != sha:  # pragma: no cover - changed while it was being read
        tmp.unlink(missing_ok=True)
        raise RedactError("the file changed while it was being redacted: scan it again first", path)
    covered = sum(sum(s.cover) for s in samples)
    check = _rescreened(screen_video(tmp, engine, references, thresholds), tmp, path)
    tmp.replace(target)
    out_sha = file_sha256(target)
    tracks = len([s for s in samples if any(s.cover)])
    with db.session(immediate=True) as s:
        row = Redaction(photo_id=pid, source_sha256=sha, path=str(target), sha256=out_sha, style=style,
                        faces_covered=covered, created_by=actor)
        s.add(row)
        s.flush()
        audit.record(s, actor=actor, action="redact", photo_sha256=sha, photo_id=pid, redaction_id=row.id,
                     redacted_sha256=out_sha, style=style, faces_covered=covered, kind="video",
                     recheck=json.dumps({"faces": len(check.faces), "verdict": str(check.verdict)}))
    return RedactResult(pid, path, True, f"{covered} face sighting(s) in {tracks} of {len(samples)} frames looked at "
                        f"(every {thresholds.redact.sample_interval_s:g} s) covered ({style}) in all {frames} frames, tracked between "
                        f"them; {_SOUND.get(sound, f'sound {sound}')}; re-scan found no listed face", str(target), covered)
