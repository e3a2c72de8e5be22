"""Enrolment: quality-checked reference photos of listed students become reference encodings.

Only students on the no-consent list are enrolled: a photo of anyone else is skipped, so no
bystander's biometric data is ever stored. Each accepted photo also leaves a small face thumbnail,
encrypted like the encodings, which the web review shows beside a possible match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import func, select

from photocheck.db import Database
from photocheck.db.models import ReferenceEncoding, ReferencePhoto, RosterImport, Student
from photocheck.images import ImageError, load_image
from photocheck.mediafiles import iter_image_files
from photocheck.results import printable_path


class EnrollError(Exception):
    """Enrolment cannot start (no no-consent list imported yet): nothing was stored."""


@dataclass
class EnrollOutcome:
    student_id: str
    path: str
    accepted: bool
    reason: str
    face_px: int | None = None
    # JPEG face thumbnail of an accepted photo, stored encrypted and then dropped from the outcome
    thumbnail: bytes | None = field(default=None, repr=False, compare=False)


@dataclass
class EnrollReport:
    outcomes: list[EnrollOutcome] = field(default_factory=list)
    not_listed: dict[str, list[str]] = field(default_factory=dict)  # folder/file id -> paths skipped
    unprotected: list[str] = field(default_factory=list)  # listed students still without a usable reference
    key_created: Path | None = None  # the encryption key file made by this run (the first enrolment)

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def rejected(self) -> int:
        return sum(not o.accepted for o in self.outcomes)


def find_reference_photos(root: Path) -> dict[str, list[Path]]:
    """Reference photos by student id, from `root/<student_id>/*` or a flat `root/<student_id>.jpg`.

    Picture-day exports are usually flat files named by student number; several photos per
    student live in a folder named by the id.
    """
    found: dict[str, list[Path]] = {}
    for path in iter_image_files([root]):
        rel = path.relative_to(root)
        sid = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found.setdefault(sid, []).append(path)
    return found


def check_reference(engine, thresholds, path: Path) -> tuple[EnrollOutcome, np.ndarray | None, str | None]:
    """Quality-check one reference photo; returns the outcome, its encoding if accepted, and sha256."""
    rules = thresholds.enroll
    try:
        img = load_image(path)
    except ImageError as exc:
        return EnrollOutcome("", str(path), False, f"unreadable: {exc}"), None, None
    # Weak peaks ([detector] weak_min_score; a chandelier at 0.30) never refuse a portrait.
    detections = engine.detect(img.rgb, strong_only=True)
    if not detections:
        return EnrollOutcome("", str(path), False, "no face found"), None, img.sha256
    if len(detections) > 1:
        return (EnrollOutcome("", str(path), False,
                              f"{len(detections)} faces found; a reference photo must show only the student"),
                None, img.sha256)
    det = detections[0]
    width = det.box[1] - det.box[3]
    if width < rules.min_face_px:
        return (EnrollOutcome("", str(path), False, f"face too small ({width} px wide, need {rules.min_face_px})",
                              width), None, img.sha256)
    if det.sharpness < rules.min_sharpness:
        return (EnrollOutcome("", str(path), False,
                              f"face too blurred (sharpness {det.sharpness:.0f}, need {rules.min_sharpness:g})",
                              width), None, img.sha256)
    from photocheck.facecrops import face_thumbnail

    (encoding,) = engine.encode(img.rgb, [det])
    return (EnrollOutcome("", str(path), True, "accepted", width, thumbnail=face_thumbnail(img.rgb, det.box)),
            encoding, img.sha256)


def enroll(
    db: Database,
    root: Path,
    *,
    engine=None,
    thresholds=None,
    on_photo: Callable[[EnrollOutcome], None] | None = None,
    actor: str | None = None,
) -> EnrollReport:
    """Enroll every reference photo under `root` for students on the no-consent list.

    Encodings are encrypted before they are stored (photocheck/protect.py); the first enrolment
    creates the key file (reported in `key_created`). Raises protect.ProtectionError when the
    database's encodings were made with a key that is not available, and EnrollError (before
    creating anything) when no no-consent list was ever imported: nobody could be enrolled.
    """
    from photocheck import audit
    from photocheck.config import current_user
    from photocheck.db.models import ReferenceThumbnail
    from photocheck.engine import FaceEngine
    from photocheck.protect import encoding_aad, encrypt_bytes, encrypt_vector, key_for_enroll, thumbnail_aad
    from photocheck.thresholds import load_thresholds

    with db.session() as s:
        if not s.scalar(select(func.count()).select_from(RosterImport)):
            raise EnrollError("import the no-consent list first: photocheck roster import FILE "
                              "(only students on it are enrolled)")
    actor = actor or current_user()
    thresholds = thresholds or load_thresholds()
    engine = engine or FaceEngine()
    model = engine.model_info()["encoder"]
    report = EnrollReport()
    key, created = key_for_enroll(db)
    if created:
        report.key_created = key.path
    photos = find_reference_photos(root)
    with db.session() as s:
        listed = {st.student_id: st.id for st in s.scalars(select(Student))}
    for sid, paths in sorted(photos.items()):
        if sid not in listed:
            report.not_listed[printable_path(sid)] = [printable_path(p) for p in paths]
            continue
        for path in paths:
            outcome, encoding, sha = check_reference(engine, thresholds, path)
            outcome.student_id = sid
            outcome.path = printable_path(path)
            thumbnail, outcome.thumbnail = outcome.thumbnail, None
            # One transaction per photo: a crash keeps every photo enrolled before it.
            with db.session(immediate=True) as s:
                audit.record(s, actor=actor, action="enroll", student_id=sid, reference_sha256=sha,
                             accepted=outcome.accepted)
                if sha is not None:
                    old = s.scalar(select(ReferencePhoto).where(ReferencePhoto.student_pk == listed[sid],
                                                                ReferencePhoto.sha256 == sha))
                    if old is not None:
                        s.delete(old)
                        s.flush()
                    ref = ReferencePhoto(student_pk=listed[sid], path=outcome.path, sha256=sha,
                                         accepted=outcome.accepted, reason=outcome.reason, face_px=outcome.face_px)
                    s.add(ref)
                    if encoding is not None:
                        s.flush()  # the photo's id is part of what the ciphertext is bound to
                        aad = encoding_aad(listed[sid], ref.id, model["name"], model["version"])
                        ref.encoding = ReferenceEncoding(
                            student_pk=listed[sid], model_name=model["name"], model_version=model["version"],
                            vector=encrypt_vector(key, np.asarray(encoding, dtype="<f8"), aad), key_id=key.key_id)
                    if thumbnail is not None:
                        s.flush()
                        ref.thumbnail = ReferenceThumbnail(
                            student_pk=listed[sid], key_id=key.key_id,
                            jpeg=encrypt_bytes(key, thumbnail, thumbnail_aad(listed[sid], ref.id)))
            report.outcomes.append(outcome)
            if on_photo:
                on_photo(outcome)
    from photocheck.students import list_students

    report.unprotected = [st.student_id for st in list_students(db, model["name"]) if not st.protected]
    return report
