"""The publish gate: only photos signed off for the channel leave, stripped and renamed.

Every check is made again here, at the last moment, rather than trusted from the sign-off:
the file must still be the one signed off (sha256), the sign-off must cover the channel, no
roster change may be waiting for a re-check, and no strict student may be in it.

What leaves: the pixels only. Each photo is decoded (EXIF orientation applied) and re-encoded
as a fresh JPEG, so EXIF, GPS, XMP, IPTC, ICC profiles, comments and thumbnails are all gone;
a clip is re-encoded from its decoded frames as H.264 MP4 (clipcopy.py): no container or stream
tags, and no sound unless asked for (`with_sound`: photocheck never listens to it, and a name said
aloud identifies a child too). Files are named `<channel>-<photo id>.jpg` (`.mp4` for clips): the
original name (often a student's name) never leaves. `manifest.json` in the folder lists what was published, by whom and from which sign-off.

A caption given with the photos is checked for listed students' names first (textcheck.py): one
naming (or possibly naming) a student who opted out of the channel stops the whole run. It is
stored with each publication; the audit log keeps its sha256 only.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from photocheck import audit, datadir
from photocheck.config import ConfigError, check_channel
from photocheck.db import Database
from photocheck.db.models import Photo, Publication, Redaction, Scan, utcnow
from photocheck.images import ImageError, file_sha256, load_image
from photocheck.review import (
    PUBLISHABLE_VERDICTS,
    _current_signoff,
    channel_verdicts,
    same_person,
    strict_in_photo,
    void_signoff,
)

MANIFEST = "manifest.json"


class PublishError(Exception):
    """The publish cannot start (unknown channel, bad folder): nothing was published."""


class CaptionRefused(PublishError):
    """The caption names listed students who opted out of the channel: nothing was published."""

    def __init__(self, message: str, students: list[str]):
        super().__init__(message)
        self.students = students


class _Refused(Exception):
    pass


@dataclass
class Published:
    photo_id: int
    file: str
    sha256: str
    source_sha256: str
    decision: str
    signed_off_by: str
    signoff_id: int
    caption_sha256: str | None = None


@dataclass
class Refused:
    photo_id: int
    path: str
    reason: str


@dataclass
class PublishReport:
    channel: str
    dest: str
    published: list[Published] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    manifest: str | None = None


def publish(db: Database, photo_ids, *, channel: str, dest: Path, actor: str,
            caption: str | None = None, with_sound: bool = False) -> PublishReport:
    """Publish the signed-off photos among `photo_ids` for `channel` into `dest`, with `caption`
    (checked for names first: CaptionRefused). Clips keep their sound only `with_sound`."""
    try:
        channel = check_channel(channel)
    except ConfigError as exc:
        raise PublishError(str(exc)) from None
    cap_sha = _check_caption(db, caption, channel, actor) if caption is not None else None
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"not a folder: {dest}")
    datadir.make_dir(dest)
    report = PublishReport(channel=channel, dest=str(dest))
    for pid in photo_ids:
        try:
            report.published.append(_publish_one(db, pid, channel, dest, actor, caption, cap_sha,
                                                 with_sound))
        except _Refused as exc:
            with db.session() as s:
                photo = s.get(Photo, pid)
            report.refused.append(Refused(pid, photo.path if photo else str(pid), str(exc)))
    with db.session(immediate=True) as s:
        audit.record(s, actor=actor, action="publish.run", channel=channel, published=len(report.published),
                     refused=[r.photo_id for r in report.refused], **({"caption_sha256": cap_sha} if cap_sha else {}))
    report.manifest = str(_write_manifest(dest, report, actor))
    return report


def _check_caption(db: Database, caption: str, channel: str, actor: str) -> str:
    """The caption's sha256 if it names no student listed for `channel`; else CaptionRefused
    (and an audit event with the hash and the ids, never the text)."""
    from photocheck.names import NAMED
    from photocheck.textcheck import caption_sha256, check_text

    digest = caption_sha256(caption)
    found = check_text(db, caption, channel=channel, source="caption")
    if not found:
        return digest
    named = sorted({f.student_id for f in found if f.level == NAMED})
    maybe = sorted({f.student_id for f in found if f.level != NAMED} - set(named))
    with db.session(immediate=True) as s:
        audit.record(s, actor=actor, action="publish.caption_refused", channel=channel, caption_sha256=digest,
                     students=named + maybe)
    parts = []
    if named:
        parts.append(f"names listed student(s) who opted out of {channel}: {', '.join(named)}")
    if maybe:
        parts.append(f"holds the rare first name of listed student(s) who opted out of {channel}: "
                     f"{', '.join(maybe)} (if it is another child, write their full name)")
    raise CaptionRefused("the caption " + "; it ".join(parts) + ". Nothing was published.", named + maybe)


def _publish_one(db: Database, pid: int, channel: str, dest: Path, actor: str, caption: str | None = None,
                 cap_sha: str | None = None, with_sound: bool = False) -> Published:
    voided = None
    with db.session(immediate=True) as s:
        photo = s.get(Photo, pid)
        if photo is None:
            raise _Refused(f"no photo with id {pid}")
        scan = s.get(Scan, photo.scan_id)
        so = _current_signoff(s, pid)
        if so is None or photo.signoff_state == "pending":
            raise _Refused("not signed off yet (pending in `photocheck review list`)")
        if so.decision == "reject":
            raise _Refused(f"rejected by {so.reviewer}")
        allowed = [c for c in so.channels.split(";") if c]
        if channel not in allowed:
            verdict = channel_verdicts(photo, scan).get(channel, "not screened")
            raise _Refused(f"signed off for {', '.join(allowed) or 'no channel'} only, not {channel} "
                           f"(verdict for {channel}: {verdict})")
        if photo.needs_recheck:
            raise _Refused("a roster change may concern this photo: run `photocheck recheck` first")
        if strict_in_photo(s, pid):
            raise _Refused("shows a student who must never be published (strict in the roster)")
        if same_person(so.reviewer, scan.owner):  # pragma: no cover - sign refuses it
            raise _Refused("signed off by the person who ran the scan")
        now = file_sha256(photo.path)
        if now != so.sha256:
            # The sign-off was for other bytes: it no longer holds, the photo goes back to the queue.
            void_signoff(s, photo, actor=actor, reason="file changed after sign-off")
            voided = f"{photo.path} has {'changed' if now else 'gone'} since it was signed off; it is pending again"
        elif so.decision == "approve":
            if channel_verdicts(photo, scan).get(channel) not in PUBLISHABLE_VERDICTS:  # pragma: no cover
                raise _Refused(f"verdict for {channel} is not publishable")
            source, source_sha = photo.path, so.sha256
        else:
            red = s.get(Redaction, so.redaction_id) if so.redaction_id else None
            if red is None or red.source_sha256 != so.sha256 or file_sha256(red.path) != red.sha256:
                raise _Refused("the verified redacted copy is missing or has changed: redact and sign off again")
            source, source_sha = red.path, red.sha256
        signoff = (so.id, so.decision, so.reviewer, so.sha256)
        kind = photo.kind
    if voided:
        raise _Refused(voided)

    name = f"{channel}-{pid:06d}.{'mp4' if kind == 'video' else 'jpg'}"
    target = dest / name
    tmp = dest / f".{name}.tmp"
    if kind == "video":
        sound = _clean_clip(source, source_sha, tmp, with_sound)
    else:
        sound = None
        _clean_photo(source, tmp)
    tmp.replace(target)
    out_sha = file_sha256(target)
    with db.session(immediate=True) as s:
        s.add(Publication(photo_id=pid, signoff_id=signoff[0], channel=channel, dest=str(dest.resolve()),
                          file_name=name, sha256=out_sha, published_by=actor, caption=caption,
                          caption_sha256=cap_sha))
        audit.record(s, actor=actor, action="publish", photo_sha256=signoff[3], photo_id=pid, channel=channel,
                     signoff_id=signoff[0], published_sha256=out_sha, file=name,
                     **({"caption_sha256": cap_sha} if cap_sha else {}), **({"sound": sound} if sound else {}))
    return Published(photo_id=pid, file=name, sha256=out_sha, source_sha256=signoff[3], decision=signoff[1],
                     signed_off_by=signoff[2], signoff_id=signoff[0], caption_sha256=cap_sha)


def _clean_photo(source: str, tmp: Path) -> None:
    try:
        img = load_image(source)
    except ImageError as exc:
        raise _Refused(f"cannot read {source}: {exc}") from None
    if img.sha256 != file_sha256(source):  # pragma: no cover - changed between the two reads
        raise _Refused("file changed while publishing")
    # Fresh pixels, fresh file: no info dict, so no EXIF/GPS/XMP/IPTC/ICC/comment is written.
    with datadir.open_file(tmp) as fh:
        Image.fromarray(img.rgb).save(fh, "JPEG", quality=92, optimize=True)


def _clean_clip(source: str, sha256: str, tmp: Path, with_sound: bool) -> str | None:
    """A clip re-encoded from its decoded frames (H.264 MP4): no container or stream tags
    (creation time, GPS, camera, title), no subtitles or chapters; `with_sound`, the first sound
    track copied unchanged where MP4 can hold its codec. Returns what became of the sound."""
    from photocheck.clipcopy import write_clean_copy
    from photocheck.thresholds import load_thresholds
    from photocheck.video import VideoError

    try:
        with datadir.open_file(tmp) as fh:
            _, sound = write_clean_copy(source, fh, load_thresholds().video, with_sound)
    except VideoError as exc:
        tmp.unlink(missing_ok=True)
        raise _Refused(f"cannot read {source}: {exc}") from None
    except Exception as exc:  # an encoder failure: nothing leaves
        tmp.unlink(missing_ok=True)
        raise _Refused(f"cannot copy {source}: {type(exc).__name__}: {exc}") from None
    if file_sha256(source) != sha256:  # changed while it was read: what was copied was not signed off
        tmp.unlink(missing_ok=True)
        raise _Refused("file changed while publishing")
    return sound


def _write_manifest(dest: Path, report: PublishReport, actor: str) -> Path:
    """Merge this run into dest/manifest.json (one entry per file; later runs replace entries)."""
    path = dest / MANIFEST
    entries: dict[str, dict] = {}
    if path.is_file():
        try:
            entries = {e["file"]: e for e in json.loads(path.read_text())["files"]}
        except (ValueError, KeyError, TypeError):
            entries = {}
    at = utcnow().isoformat(timespec="seconds")
    for p in report.published:
        entries[p.file] = {**asdict(p), "channel": report.channel, "published_by": actor, "published_at": at}
    body = {
        "channel": report.channel,
        "note": "Published by photocheck: every file was signed off by a second person for this channel; "
                "metadata stripped. Source file names are not included.",
        "files": sorted(entries.values(), key=lambda e: e["file"]),
    }
    tmp = path.with_name(f".{MANIFEST}.tmp")
    with datadir.open_file(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
    return path
