"""Consent changes: re-read approved photos against the current no-consent list.

A roster import that lists a new student (or widens someone's opt-out) flags every approved
photo with a face (review.mark_for_recheck). Bystander encodings are never stored, so the
photos themselves are screened again. A photo whose verdict got worse on a channel it was
signed off for loses its sign-off (back to pending); if it was already published, it goes on
the take-down list. Photos that are still fine are simply unflagged.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from photocheck import audit
from photocheck.config import school_channels
from photocheck.db import Database
from photocheck.db.convert import channel_verdicts
from photocheck.db.models import Photo, Publication, Redaction, Scan
from photocheck.images import file_sha256
from photocheck.results import SEVERITY, Verdict
from photocheck.review import _current_signoff, void_signoff


def _severity(verdict: str | None) -> int:
    """SEVERITY, counting anything unknown (a channel not judged) as an error: never as better."""
    return SEVERITY.get(verdict, SEVERITY[Verdict.ERROR])  # type: ignore[call-overload]


@dataclass
class Takedown:
    photo_id: int
    source: str
    channel: str
    published_file: str  # folder/file as published
    published_at: str


@dataclass
class RecheckItem:
    photo_id: int
    path: str
    still_ok: bool
    message: str


@dataclass
class RecheckReport:
    items: list[RecheckItem] = field(default_factory=list)
    takedown: list[Takedown] = field(default_factory=list)


def recheck(db: Database, *, actor: str, engine=None, thresholds=None) -> RecheckReport:
    from photocheck.engine import FaceEngine
    from photocheck.model_files import model_info
    from photocheck.pipeline import screen_photo
    from photocheck.scan import face_rows
    from photocheck.students import load_channel_references
    from photocheck.thresholds import load_thresholds
    from photocheck.video import screen_video

    with db.session() as s:
        ids = list(s.scalars(select(Photo.id).where(Photo.needs_recheck.is_(True)).order_by(Photo.id)))
    report = RecheckReport()
    if not ids:
        return report
    thresholds = thresholds or load_thresholds()
    engine = engine or FaceEngine()
    enc = model_info()["encoder"]
    channels = list(school_channels())
    refs = load_channel_references(db, enc["name"], enc["version"], [None, *channels])
    channel_refs = {ch: refs[ch] for ch in channels}
    from photocheck.textcheck import TextChecker

    text_check = TextChecker.load(db, thresholds).apply

    for pid in ids:
        with db.session() as s:
            photo = s.get(Photo, pid)
            so = _current_signoff(s, pid)
            red = s.get(Redaction, so.redaction_id) if so and so.redaction_id else None
            path, kind = photo.path, photo.kind
        screen = screen_video if kind == "video" else screen_photo
        fresh = text_check(screen(Path(path), engine, refs[None], thresholds, channel_refs))
        copy = screen(Path(red.path), engine, refs[None], thresholds) if red else None

        with db.session(immediate=True) as s:
            photo = s.get(Photo, pid)
            scan = s.get(Scan, photo.scan_id)
            so = _current_signoff(s, pid)
            old = channel_verdicts(photo, scan)
            signed = [c for c in (so.channels.split(";") if so else []) if c]
            problem = None
            if so is None or photo.signoff_state == "pending":
                problem = None  # voided meanwhile: nothing left to protect
            elif fresh.sha256 != so.sha256 or file_sha256(path) != so.sha256:
                problem = "the file has changed or gone since it was signed off"
            elif red is not None:
                still = [f for f in copy.faces if f.status.value in ("listed", "uncertain")]
                if copy.verdict.value == "error" or still:
                    problem = f"the redacted copy shows {len(still) or 'an unreadable'} listed or possibly listed face(s)"
            else:
                worse = [c for c in signed if _severity(fresh.channel_verdicts.get(c)) > _severity(old.get(c))]
                if worse:
                    problem = "now " + ", ".join(f"{fresh.channel_verdicts[c]} on {c}" for c in worse)
            if fresh.verdict.value != "error":  # keep the stored result current (never encodings)
                photo.verdict = fresh.verdict.value
                photo.reasons = json.dumps(fresh.reasons)
                photo.channel_verdicts = json.dumps({k: str(v) for k, v in fresh.channel_verdicts.items()})
                photo.faces = face_rows(fresh)
                photo.text_hits = fresh.text_hits
            photo.needs_recheck = False
            if problem:
                void_signoff(s, photo, actor=actor, reason=f"recheck: {problem}")
                for pub in s.scalars(select(Publication).where(Publication.photo_id == pid)
                                     .order_by(Publication.id)):
                    report.takedown.append(Takedown(pid, path, pub.channel, str(Path(pub.dest) / pub.file_name),
                                                    pub.published_at.isoformat(timespec="seconds")))
            audit.record(s, actor=actor, action="recheck", photo_sha256=fresh.sha256 or photo.sha256, photo_id=pid,
                         ok=problem is None, verdict=fresh.verdict.value, signed_channels=signed)
            report.items.append(RecheckItem(pid, path, problem is None,
                                            problem or f"still fine ({fresh.verdict.value}); sign-off kept"))
    return report
