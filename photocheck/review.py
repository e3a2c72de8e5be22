"""The second person's sign-off: the queue, and the rules no caller can skip.

Rules (each refusal says why and what to do instead):
- the reviewer is not the person who ran the scan;
- a photo that could not be screened can only be rejected;
- a photo blocked on a channel is never approved as is for that channel: it is rejected, or
  approved in redacted form (a verified copy made by `redact`);
- a photo of a strict student (e.g. protection order) cannot be approved, not even redacted;
- a sign-off is bound to the file's sha256: if the file changes, the sign-off no longer holds;
- a photo flagged by a roster change must be re-checked before it can be approved.

Two reviewers racing on one photo: the sign-off is a conditional UPDATE on the photo's version
(inside a write-locked transaction), so exactly one wins and the other is told who did.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, selectinload

from photocheck import audit
from photocheck.config import ConfigError, check_channel
from photocheck.db import Database
from photocheck.db.convert import channel_verdicts, photo_result
from photocheck.db.models import Face, Photo, Redaction, ReferenceThumbnail, Scan, Signoff, Student
from photocheck.groups import assign_groups
from photocheck.images import file_sha256
from photocheck.results import DECISIONS, PhotoResult, ScanSummary, Verdict, display_rank
from photocheck.thresholds import load_thresholds

# signoff_state after each decision
STATE = {"approve": "approved", "reject": "rejected", "redact": "redacted"}
PUBLISHABLE_VERDICTS = ("clear", "review")  # review: the reviewer has now looked at the faces


class SignoffError(Exception):
    """A sign-off refused by a rule; the message says which and what to do.

    `rule` names the rule (e.g. "blocked", "no_redaction") so a caller such as the web review
    can word the way out in its own terms.
    """

    def __init__(self, message: str, rule: str = ""):
        super().__init__(message)
        self.rule = rule


class PhotoNotFound(SignoffError):
    pass


class GroupRefused(SignoffError):
    """A decision refused for a whole burst group (its photos must be signed one by one)."""


def same_person(a: str, b: str) -> bool:
    """Whether two user names are the same person for the "second person" rule (case and
    surrounding blanks ignored, as account names are)."""
    return a.strip().casefold() == b.strip().casefold()


def strict_in_photo(s: Session, photo_id: int) -> list[str]:
    """Strict students identified in the photo."""
    return sorted(s.scalars(
        select(Face.student_id).join(Student, Student.student_id == Face.student_id)
        .where(Face.photo_id == photo_id, Face.status == "listed", Student.strict.is_(True))).unique())


# --- the queue ---------------------------------------------------------------------------------

@dataclass
class QueueItem:
    photo_id: int
    scan_id: int
    path: str
    sha256: str | None
    verdict: str
    channel_verdicts: dict[str, str]
    reasons: list[str]
    scanned_by: str
    state: str
    needs_recheck: bool
    signed_by: str | None = None
    decision: str | None = None
    channels: list[str] = field(default_factory=list)  # channels the current sign-off allows
    group: int | None = None       # burst group within its scan (numbered as in the scan's reports)
    group_size: int = 1
    group_verdict: str | None = None  # worst verdict among the group's members, whatever their state


def burst_groups(s: Session, scan: Scan) -> dict[int, tuple[int, int, str]]:
    """photo id -> (group, group size, group verdict) for every photo of a scan.

    Computed the same way as the scan's reports (same photo order, the grouping threshold the
    scan ran with), over all its photos whatever their sign-off state, so numbers match the
    reports and a group that ever held a blocked photo stays marked blocked.
    """
    max_hamming = json.loads(scan.thresholds or "{}").get("grouping", {}).get("max_hamming")
    if max_hamming is None:
        max_hamming = load_thresholds().grouping.max_hamming
    rows = s.execute(select(Photo.id, Photo.path, Photo.verdict, Photo.phash).where(Photo.scan_id == scan.id)).all()
    rows.sort(key=lambda r: (r.path, r.id))  # the reports' order (in Python: database collations differ)
    photos = [PhotoResult(path=r.path, verdict=Verdict(r.verdict), phash=r.phash) for r in rows]
    assign_groups(photos, int(max_hamming))
    return {r.id: (p.group, p.group_size, str(p.group_verdict)) for r, p in zip(rows, photos)}


def queue(db: Database, *, scan_id: int | None = None, verdicts: Iterable[str] | None = None,
          states: Iterable[str] | None = ("pending",), recheck_only: bool = False) -> list[QueueItem]:
    """Photos awaiting (or, with other `states`, past) sign-off, most urgent first.

    Burst groups stay together, in the place of their worst member, so a reviewer sees (and can
    decide) a burst at once; inside a group the worst photo comes first.
    """
    with db.session() as s:
        groups: dict[int, dict[int, tuple[int, int, str]]] = {}
        q = select(Photo, Scan).join(Scan, Scan.id == Photo.scan_id)
        if scan_id is not None:
            q = q.where(Photo.scan_id == scan_id)
        if verdicts:
            q = q.where(Photo.verdict.in_(list(verdicts)))
        if states:
            q = q.where(Photo.signoff_state.in_(list(states)))
        if recheck_only:
            q = q.where(Photo.needs_recheck.is_(True))
        items = []
        for photo, scan in s.execute(q.order_by(Photo.id)):
            so = _current_signoff(s, photo.id)
            if scan.id not in groups:
                groups[scan.id] = burst_groups(s, scan)
            group, group_size, group_verdict = groups[scan.id][photo.id]
            items.append(QueueItem(
                photo_id=photo.id, scan_id=scan.id, path=photo.path, sha256=photo.sha256, verdict=photo.verdict,
                channel_verdicts=channel_verdicts(photo, scan), reasons=json.loads(photo.reasons or "[]"),
                scanned_by=scan.owner, state=photo.signoff_state, needs_recheck=photo.needs_recheck,
                signed_by=so.reviewer if so else None, decision=so.decision if so else None,
                channels=[c for c in (so.channels.split(";") if so else []) if c],
                group=group, group_size=group_size, group_verdict=group_verdict))
    items.sort(key=lambda i: (display_rank(i.group_verdict or i.verdict), i.scan_id, i.group or 0,
                              display_rank(i.verdict), i.photo_id))
    return items


SIGNOFF_STATES = ("pending", "approved", "redacted", "rejected")


@dataclass
class ViewItem:
    photo: PhotoResult
    verdict: str        # for the channel shown ("not screened" when it was not judged for it)
    state: str          # pending|approved|redacted|rejected
    version: int        # what a decision taken on this view must still find


@dataclass
class ScanView:
    """One scan's photos for a reviewer: burst groups kept together, the most urgent first."""

    summary: ScanSummary
    blocks: list[list[ViewItem]]   # a burst group's members, or a single photo
    count: int                     # photos shown
    decided: int                   # photos of the scan signed off, whatever the filter
    total: int


def scan_view(db: Database, scan_id: int, *, channel: str | None = None, state: str = "pending") -> ScanView:
    """The photos of a scan in `state` ("all" for every state), with verdicts for `channel`
    (None: the strictest), burst groups together in the place of their worst member."""
    summary = scan_summary(db, scan_id)
    with db.session() as s:
        versions = dict(s.execute(select(Photo.id, Photo.version).where(Photo.scan_id == scan_id)).all())
    groups: dict[object, list[ViewItem]] = {}
    decided = 0
    for i, p in enumerate(summary.photos):
        st = p.signoff.split(" ", 1)[0]
        decided += st != "pending"
        if state != "all" and st != state:
            continue
        verdict = (p.channel_verdicts[channel].value if channel in p.channel_verdicts else "not screened") \
            if channel else p.verdict.value
        key = p.group if p.group_size > 1 else ("single", i)
        groups.setdefault(key, []).append(ViewItem(p, verdict, st, versions[p.photo_id]))
    blocks = list(groups.values())
    for members in blocks:
        members.sort(key=lambda it: display_rank(it.verdict))
    blocks.sort(key=lambda m: display_rank(m[0].verdict))
    return ScanView(summary, blocks, sum(map(len, blocks)), decided, len(summary.photos))


def page_of(blocks: list[list[ViewItem]], page: int, size: int) -> tuple[list[list[ViewItem]], int]:
    """The blocks of page `page` (1..) holding about `size` photos each, never splitting a burst
    group; and the number of pages."""
    pages: list[list[list[ViewItem]]] = [[]]
    n = 0
    for members in blocks:
        if n and n + len(members) > size:
            pages.append([])
            n = 0
        pages[-1].append(members)
        n += len(members)
    return pages[min(max(page, 1), len(pages)) - 1], len(pages)


def _current_signoff(s: Session, photo_id: int) -> Signoff | None:
    return s.scalar(select(Signoff).where(Signoff.photo_id == photo_id, Signoff.current.is_(True))
                    .order_by(Signoff.id.desc()).limit(1))


def current_signoff(db: Database, photo_id: int) -> Signoff | None:
    with db.session() as s:
        return _current_signoff(s, photo_id)


def resolve_photos(db: Database, refs: Iterable[str], *, scan_id: int | None = None,
                   verdicts: Iterable[str] | None = None, pending_only: bool = True) -> list[int]:
    """Photo ids from command-line references: an id, or a path (its most recent scan).

    With no refs and a `scan_id`, every photo of that scan (filtered by verdicts, pending only).
    """
    ids: list[int] = []
    refs = list(refs)
    with db.session() as s:
        if not refs and scan_id is not None:
            q = select(Photo.id).where(Photo.scan_id == scan_id)
            if verdicts:
                q = q.where(Photo.verdict.in_(list(verdicts)))
            if pending_only:
                q = q.where(Photo.signoff_state == "pending")
            return list(s.scalars(q.order_by(Photo.id)))
        for ref in refs:
            if ref.isdigit() and s.get(Photo, int(ref)) is not None:
                ids.append(int(ref))
                continue
            target = Path(ref).expanduser().resolve()
            q = select(Photo).where(Photo.path.like(f"%{target.name}"))
            if scan_id is not None:
                q = q.where(Photo.scan_id == scan_id)
            match = [p for p in s.scalars(q.order_by(Photo.id.desc())) if Path(p.path).resolve() == target]
            if not match:
                raise PhotoNotFound(f"{ref}: not a scanned photo (scan it first, or give its photo id from "
                                    "`photocheck review list`)")
            ids.append(match[0].id)
    return ids


# --- signing -------------------------------------------------------------------------------------

@dataclass
class SignResult:
    photo_id: int
    path: str
    ok: bool
    message: str
    decision: str | None = None
    channels: list[str] = field(default_factory=list)
    rule: str = ""  # the rule that refused it (see SignoffError)


def sign(db: Database, photo_ids: Iterable[int], *, reviewer: str, decision: str, channel: str | None = None,
         note: str = "", expected_version: int | None = None,
         expected_versions: Mapping[int, int] | None = None) -> list[SignResult]:
    """Sign off each photo (one transaction each); a refusal for one does not stop the others.

    `expected_versions`: photo id -> the version the reviewer looked at (overrides `expected_version`).
    """
    if decision not in DECISIONS:
        raise SignoffError(f"unknown decision {decision!r} (choose approve, reject or redact)")
    if channel is not None:
        try:
            channel = check_channel(channel)
        except ConfigError as exc:
            raise SignoffError(str(exc)) from None
    out = []
    for pid in photo_ids:
        try:
            version = expected_versions.get(pid, expected_version) if expected_versions else expected_version
            out.append(sign_one(db, pid, reviewer=reviewer, decision=decision, channel=channel, note=note,
                                expected_version=version))
        except SignoffError as exc:
            with db.session() as s:
                photo = s.get(Photo, pid)
                path = photo.path if photo else str(pid)
            out.append(SignResult(pid, path, False, str(exc), decision, rule=exc.rule))
    return out


def sign_selected(db: Database, versions: Mapping[int, int], *, reviewer: str, decision: str,
                  channel: str | None = None, note: str = "") -> list[SignResult]:
    """One decision for photos a reviewer picked after looking at them (e.g. on a contact sheet).

    `versions`: photo id -> the version shown; a photo decided or reopened since is refused, not
    re-decided. Each photo passes every rule of `sign_one` on its own: the refused ones come back
    with why (ok False), the others are decided. Nothing selected is an error, never "all".
    """
    if not versions:
        raise SignoffError("no photo selected: tick the photos to decide first", rule="empty")
    return sign(db, sorted(versions), reviewer=reviewer, decision=decision, channel=channel, note=note,
                expected_versions=versions)


GROUP_REJECT_ONLY = ("blocked", "error")  # group verdicts for which a burst group is only rejected as a group


def group_decisions(group_verdict: str, member_decisions: Iterable[Iterable[str]]) -> list[str]:
    """The decisions `sign_group` would take for a group of several photos: those every pending
    member passes on its own (from `decision_options`), never approve for a blocked/error group."""
    members = [set(d) for d in member_decisions]
    if not members:
        return []
    return [d for d in ("approve", "reject") if all(d in m for m in members)
            and not (d == "approve" and group_verdict in GROUP_REJECT_ONLY)]


def sign_group(db: Database, scan_id: int, group: int, *, reviewer: str, decision: str,
               channel: str | None = None, note: str = "",
               versions: Mapping[int, int] | None = None) -> list[SignResult]:
    """One decision for every pending photo of a burst group (see `burst_groups`).

    `versions`: the group's photos the reviewer saw, each at the version shown (a web page);
    by default every pending member at its current version.

    Each photo still passes every rule of `sign_one` on its own. On top of that, a group that
    holds a blocked or unscreenable photo cannot be approved as a group: the same people are
    probably in every frame, even where the detector did not find them, so each photo of such
    a group must be looked at and signed on its own (rejecting the whole group is allowed).
    """
    with db.session() as s:
        scan = s.get(Scan, scan_id)
        if scan is None:
            raise PhotoNotFound(f"no scan with id {scan_id}")
        members = {pid: g for pid, g in burst_groups(s, scan).items() if g[0] == group}
        if not members:
            raise PhotoNotFound(f"scan {scan_id} has no burst group {group} (see `photocheck review list "
                                f"--scan {scan_id}`)")
        group_verdict = next(iter(members.values()))[2]
        pending = list(s.scalars(select(Photo.id).where(Photo.id.in_(list(members)),
                                                        Photo.signoff_state == "pending").order_by(Photo.id)))
    if decision != "reject" and group_verdict in GROUP_REJECT_ONLY and len(members) > 1:
        raise GroupRefused(
            f"burst group {group} of scan {scan_id} holds a {group_verdict} photo: the same people are probably in "
            f"every frame, so its {len(members)} photos must be signed one by one (photo ids "
            f"{', '.join(map(str, sorted(members)))}); rejecting the whole group is allowed", rule="group")
    if versions is not None:
        strangers = sorted(set(versions) - set(members))
        if strangers:
            raise SignoffError(f"photo(s) {', '.join(map(str, strangers))} are not in burst group {group} of "
                               f"scan {scan_id}; nothing was changed", rule="group")
        return sign(db, sorted(versions), reviewer=reviewer, decision=decision, channel=channel, note=note,
                    expected_versions=versions)
    return sign(db, pending, reviewer=reviewer, decision=decision, channel=channel, note=note)


def _check(s: Session, photo: Photo, scan: Scan, *, reviewer: str, decision: str, channel: str | None,
           version: int, file_sha: Callable[[], str | None],
           strict: list[str] | None = None) -> tuple[list[str], list[str], int | None]:
    """Every rule of a sign-off, in one place: raises SignoffError (with its rule) when one refuses.

    Returns (channels judged, channels the decision allows, verified redaction id).
    `file_sha`: the photo file's sha256 now (called at most once, only when it matters);
    `strict`: `strict_in_photo` if the caller already knows it.
    """
    if photo.signoff_state != "pending" or photo.version != version:
        prev = _current_signoff(s, photo.id)
        who = f" by {prev.reviewer} ({prev.decision}, {prev.created_at:%Y-%m-%d %H:%M} UTC)" if prev else ""
        raise SignoffError(f"photo {photo.id} was already signed off{who}; nothing was changed "
                           f"(`photocheck review reopen {photo.id}` sends it back to the queue)", rule="signed")
    if same_person(reviewer, scan.owner):
        raise SignoffError(f"{reviewer} ran scan {scan.id}: a second person must sign off its photos",
                           rule="own_scan")

    verdicts = channel_verdicts(photo, scan)
    if channel is not None and channel not in verdicts:
        raise SignoffError(f"photo {photo.id} was screened for {', '.join(verdicts)} only; scan it again "
                           f"without --channel (or with --channel {channel}) to sign it off for {channel}",
                           rule="channel")
    targets = [channel] if channel else list(verdicts)

    sha = photo.sha256
    if decision != "reject":
        if photo.verdict == "error" or not sha:
            raise SignoffError(f"photo {photo.id} could not be screened ({photo.error or 'no result'}): "
                               "it can only be rejected", rule="unscreened")
        now = file_sha()
        if now != sha:
            raise SignoffError(f"{photo.path} has {'changed' if now else 'gone'} since it was scanned: "
                               "scan it again; a sign-off only holds for the exact file that was screened",
                               rule="changed")
        if photo.needs_recheck:
            raise SignoffError(f"photo {photo.id} must be re-checked after a roster change: "
                               "run `photocheck recheck` first", rule="recheck")
        if strict_in_photo(s, photo.id) if strict is None else strict:
            raise SignoffError(f"photo {photo.id} shows a student who must never be published "
                               "(strict in the roster, e.g. a protection order), not even redacted: reject it",
                               rule="strict")

    redaction_id = None
    if decision == "approve":
        allowed = [ch for ch in targets if verdicts[ch] in PUBLISHABLE_VERDICTS]
        if not allowed:
            blocked_on = ", ".join(ch for ch in targets if verdicts[ch] == "blocked")
            raise SignoffError(f"photo {photo.id} is blocked ({'on ' + blocked_on if blocked_on else verdicts}): "
                               "a listed student is in it, so it can never be approved as is — reject it, or "
                               f"run `photocheck redact {photo.id} --out DIR` and sign with --decision redact",
                               rule="blocked")
    elif decision == "redact":
        red = s.scalar(select(Redaction).where(Redaction.photo_id == photo.id, Redaction.source_sha256 == sha)
                       .order_by(Redaction.id.desc()).limit(1))
        if red is None:
            raise SignoffError(f"photo {photo.id} has no verified redacted copy: run "
                               f"`photocheck redact {photo.id} --out DIR` first", rule="no_redaction")
        if file_sha256(red.path) != red.sha256:
            raise SignoffError(f"the redacted copy {red.path} has changed or gone since it was verified: "
                               "redact the photo again", rule="no_redaction")
        redaction_id = red.id
        allowed = [ch for ch in targets if verdicts[ch] != "error"]
    else:
        allowed = []
    return targets, allowed, redaction_id


def sign_one(db: Database, photo_id: int, *, reviewer: str, decision: str, channel: str | None = None,
             note: str = "", expected_version: int | None = None) -> SignResult:
    """Apply every rule, then record the decision; raises SignoffError if any rule refuses it.

    `expected_version`: the photo version the reviewer looked at (e.g. from a web page); the
    sign-off fails if anyone signed in between. By default, the version read here.
    """
    with db.session(immediate=True) as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}", rule="not_found")
        scan = s.get(Scan, photo.scan_id)
        version = photo.version if expected_version is None else expected_version
        targets, allowed, redaction_id = _check(s, photo, scan, reviewer=reviewer, decision=decision,
                                                channel=channel, version=version,
                                                file_sha=lambda: file_sha256(photo.path))
        verdicts = channel_verdicts(photo, scan)
        sha = photo.sha256

        # The race guard: only the transaction that still sees the version it read moves it on.
        moved = s.execute(update(Photo).where(Photo.id == photo.id, Photo.version == version,
                                              Photo.signoff_state == "pending")
                          .values(signoff_state=STATE[decision], version=version + 1)
                          .execution_options(synchronize_session=False))
        if moved.rowcount != 1:
            raise SignoffError(f"photo {photo.id} was signed off by someone else just now; nothing was changed",
                               rule="signed")
        s.execute(update(Signoff).where(Signoff.photo_id == photo.id).values(current=False))
        so = Signoff(photo_id=photo.id, photo_version=version, reviewer=reviewer, decision=decision,
                     channels=";".join(allowed), sha256=sha or "", redaction_id=redaction_id, note=note)
        s.add(so)
        s.flush()
        audit.record(s, actor=reviewer, action="signoff", photo_sha256=sha, photo_id=photo.id, scan_id=scan.id,
                     signoff_id=so.id, decision=decision, channels=allowed, redaction_id=redaction_id)
        not_covered = [ch for ch in targets if ch not in allowed]
        msg = {"approve": "approved", "redact": "approved in redacted form", "reject": "rejected"}[decision]
        if allowed:
            msg += " for " + ", ".join(allowed)
        if decision != "reject" and not_covered:
            msg += " (not for " + ", ".join(f"{ch}: {verdicts[ch]}" for ch in not_covered) + ")"
        return SignResult(photo.id, photo.path, True, msg, decision, allowed)


@dataclass
class DecisionOptions:
    """What a reviewer may decide on one photo now: exactly what `sign_one` would accept."""

    photo_id: int
    version: int
    decisions: list[str]            # in the order approve, redact, reject
    refused: dict[str, str]         # decision -> why `sign_one` would refuse it
    rules: dict[str, str]           # decision -> the rule that refuses it
    approve_channels: list[str]     # the channels an approval would cover
    can_make_redaction: bool        # `redact` may make a verified copy to sign ("redact" then only lacks it)


def decision_options(db: Database, photo_id: int, *, reviewer: str, check_file: bool = True) -> DecisionOptions:
    """Ask every rule of `sign_one` about each decision, without deciding anything.

    `check_file=False` skips hashing the photo file (a page listing many photos); the file check
    still runs when the decision is made.
    """
    from photocheck.redact import COVER_STATUSES

    with db.session() as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}", rule="not_found")
        scan = s.get(Scan, photo.scan_id)
        memo: list[str | None] = []

        def file_sha() -> str | None:
            if not check_file:
                return photo.sha256
            if not memo:
                memo.append(file_sha256(photo.path))
            return memo[0]

        decisions, refused, rules, approve_channels = [], {}, {}, []
        strict = strict_in_photo(s, photo.id)
        for decision in ("approve", "redact", "reject"):
            try:
                _, allowed, _ = _check(s, photo, scan, reviewer=reviewer, decision=decision, channel=None,
                                       version=photo.version, file_sha=file_sha, strict=strict)
            except SignoffError as exc:
                refused[decision], rules[decision] = str(exc), exc.rule
                continue
            decisions.append(decision)
            if decision == "approve":
                approve_channels = allowed
        covers = any(f.status in COVER_STATUSES for f in photo.faces)
        can_make = (photo.signoff_state == "pending" and covers and scan.channel is None and photo.verdict != "error"
                    and rules.get("redact", "no_redaction") in ("no_redaction", "own_scan")
                    and not strict)  # the scanner may make the copy, not sign it
        return DecisionOptions(photo.id, photo.version, decisions, refused, rules, approve_channels, can_make)


# --- evidence beside a decision ----------------------------------------------------------------

EVIDENCE_STATUSES = ("listed", "uncertain", "too_small", "unprotected")


@dataclass
class FaceEvidence:
    """One face a reviewer should look at, with the listed student it may be and why, in words."""

    face_id: int
    number: int                 # 1.. in the photo's face order (as its boxes)
    status: str
    student_id: str | None      # the listed student it is, or may be
    distance: float | None
    words: str                  # "very likely the same person", ...
    detail: str                 # the distance against the thresholds the scan used
    has_reference: bool = False  # a reference thumbnail of that student is stored


def scan_match_thresholds(scan: Scan) -> tuple[float, float]:
    """(block distance, review distance) the scan ran with (models/thresholds.toml at the time)."""
    stored = json.loads(scan.thresholds or "{}").get("match") or {}
    if "block_distance" in stored and "review_distance" in stored:
        return float(stored["block_distance"]), float(stored["review_distance"])
    m = load_thresholds().match
    return m.block_distance, m.review_distance


def distance_words(distance: float | None, block: float, review: float) -> str:
    """A face-to-reference distance in words, by the block and review distances."""
    if distance is None:
        return "no listed student to compare with"
    if distance <= block:
        return "very likely the same person"
    if distance <= review:
        return "could be the same person"
    return "probably not the same person"


def face_evidence(db: Database, photo_id: int) -> list[FaceEvidence]:
    """The photo's listed and to-review faces, each with the listed student it may be."""
    with db.session() as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}", rule="not_found")
        block, review = scan_match_thresholds(s.get(Scan, photo.scan_id))
        with_thumbnail = set(s.scalars(select(Student.student_id).join(
            ReferenceThumbnail, ReferenceThumbnail.student_pk == Student.id)))
        out = []
        for number, f in enumerate(photo.faces, 1):
            if f.status not in EVIDENCE_STATUSES:
                continue
            sid = f.student_id or f.candidate_id
            if f.status == "too_small" and f.distance is None:
                words = "too small or blurred to tell who it is"
            elif f.status == "unprotected" and f.distance is None:
                words = "cannot be ruled out: a listed student has no usable reference photo"
            else:
                words = distance_words(f.distance, block, review)
                if f.status == "too_small":
                    words += "; too small or blurred to be sure"
            detail = (f"distance {f.distance:.2f}: at or below {block:.2f} counts as the same person, "
                      f"up to {review:.2f} as maybe" if f.distance is not None else "")
            out.append(FaceEvidence(f.id, number, f.status, sid, f.distance, words, detail,
                                    sid in with_thumbnail))
        return out


def face_crop(db: Database, face_id: int, px: int | None = None) -> bytes:
    """A JPEG of one face of a scanned photo, cut from the photo file now (nothing is stored)."""
    from photocheck.facecrops import CROP_PX, photo_face_crop

    with db.session() as s:
        f = s.get(Face, face_id)
        if f is None:
            raise PhotoNotFound(f"no face with id {face_id}", rule="not_found")
        path, box = f.photo.path, (f.top, f.right, f.bottom, f.left)
        clip_time = f.time_s if f.photo.kind == "video" else None
    if clip_time is not None:  # a clip's face: cut from the frame it was seen in
        from photocheck.facecrops import face_thumbnail
        from photocheck.video import frame_at

        return face_thumbnail(frame_at(path, clip_time), box, px or CROP_PX)
    return photo_face_crop(path, box, px or CROP_PX)


def face_reference(db: Database, face_id: int) -> bytes | None:
    """The reference thumbnail of the listed student a face is, or may be; None if there is none."""
    from photocheck.students import reference_thumbnail

    with db.session() as s:
        f = s.get(Face, face_id)
        if f is None:
            raise PhotoNotFound(f"no face with id {face_id}", rule="not_found")
        sid = f.student_id or f.candidate_id
    return reference_thumbnail(db, sid) if sid else None


def reopen(db: Database, photo_id: int, *, actor: str, reason: str) -> None:
    """Send a signed-off photo back to the queue (its sign-off no longer holds)."""
    with db.session(immediate=True) as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}")
        _void(s, photo, actor=actor, reason=reason)


def _void(s: Session, photo: Photo, *, actor: str, reason: str, recheck: bool | None = None) -> None:
    s.execute(update(Signoff).where(Signoff.photo_id == photo.id).values(current=False))
    photo.signoff_state = "pending"
    photo.version += 1
    if recheck is not None:
        photo.needs_recheck = recheck
    audit.record(s, actor=actor, action="signoff.void", photo_sha256=photo.sha256, photo_id=photo.id,
                 reason=reason)


def void_signoff(s: Session, photo: Photo, *, actor: str, reason: str, recheck: bool | None = None) -> None:
    """Back to pending inside the caller's (immediate) transaction, e.g. the file changed."""
    _void(s, photo, actor=actor, reason=reason, recheck=recheck)


def mark_for_recheck(s: Session) -> int:
    """Flag every approved photo with a face: a newly listed student may be in it.

    Bystander encodings are not kept, so this cannot tell which photos do; `recheck` reads
    them again. Photos without faces cannot show anyone and are left alone.
    """
    has_face = exists().where(Face.photo_id == Photo.id)
    res = s.execute(update(Photo).where(Photo.signoff_state.in_(("approved", "redacted")), has_face,
                                        Photo.needs_recheck.is_(False))
                    .values(needs_recheck=True).execution_options(synchronize_session=False))
    return res.rowcount or 0


@dataclass
class ScanOverview:
    """One line of the list of scans: the scan row, its photos per verdict, how many await sign-off."""

    scan: Scan
    counts: dict[str, int]
    pending: int
    total: int


def scan_overviews(db: Database) -> list[ScanOverview]:
    """Every scan, newest first, with its photo counts."""
    out = []
    with db.session() as s:
        for scan in s.scalars(select(Scan).order_by(Scan.id.desc())):
            counts = dict(s.execute(select(Photo.verdict, func.count()).where(Photo.scan_id == scan.id)
                                    .group_by(Photo.verdict)).all())
            pending = s.scalar(select(func.count()).select_from(Photo).where(
                Photo.scan_id == scan.id, Photo.signoff_state == "pending")) or 0
            out.append(ScanOverview(scan, counts, pending, sum(counts.values())))
    return out


def photo_and_scan(db: Database, photo_id: int) -> tuple[Photo, Scan]:
    """The stored photo row and its scan row (detached), or PhotoNotFound."""
    with db.session() as s:
        photo = s.get(Photo, photo_id)
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}")
        return photo, s.get(Scan, photo.scan_id)


@dataclass
class PhotoDetail:
    """What a reviewer's page about one photo shows: its rows, its result (faces), its newest
    verified redacted copy of the current bytes, if any."""

    photo: Photo
    scan: Scan
    result: PhotoResult
    redaction: Redaction | None


def photo_detail(db: Database, photo_id: int) -> PhotoDetail:
    with db.session() as s:
        photo = s.scalar(select(Photo).where(Photo.id == photo_id).options(selectinload(Photo.faces)))
        if photo is None:
            raise PhotoNotFound(f"no photo with id {photo_id}")
        scan = s.get(Scan, photo.scan_id)
        red = s.scalar(select(Redaction).where(Redaction.photo_id == photo_id, Redaction.source_sha256 == photo.sha256)
                       .order_by(Redaction.id.desc()).limit(1)) if photo.sha256 else None
        return PhotoDetail(photo, scan, photo_result(photo, scan=scan, signoff=photo.signoff_state), red)


def scan_summary(db: Database, scan_id: int) -> ScanSummary:
    """A stored scan read back as a report summary, with each photo's current sign-off state."""
    with db.session() as s:
        scan = s.get(Scan, scan_id)
        if scan is None:
            raise PhotoNotFound(f"no scan with id {scan_id}")
        photos = []
        groups = burst_groups(s, scan)
        # Two queries for the whole scan, not two per photo: a page of hundreds of photos reads this.
        current: dict[int, Signoff] = {}
        for so in s.scalars(select(Signoff).join(Photo, Photo.id == Signoff.photo_id)
                            .where(Photo.scan_id == scan.id, Signoff.current.is_(True)).order_by(Signoff.id)):
            current[so.photo_id] = so  # the newest current one, as _current_signoff
        for p in s.scalars(select(Photo).where(Photo.scan_id == scan.id).options(selectinload(Photo.faces))
                           .order_by(Photo.id)):
            so = current.get(p.id)
            state = p.signoff_state
            if so is not None and state != "pending":
                state += f" by {so.reviewer}" + (f" for {so.channels.replace(';', ', ')}" if so.channels else "")
            if p.needs_recheck:
                state += " (re-check needed)"
            photos.append(photo_result(p, scan=scan, signoff=state))
            photos[-1].group, photos[-1].group_size, group_verdict = groups[p.id]
            photos[-1].group_verdict = Verdict(group_verdict)
        return ScanSummary(scan_id=scan.id, started_at=scan.started_at.isoformat(timespec="seconds"),
                           finished_at=scan.finished_at.isoformat(timespec="seconds") if scan.finished_at else None,
                           owner=scan.owner, roots=json.loads(scan.roots), thresholds=json.loads(scan.thresholds),
                           model=json.loads(scan.model), unprotected_students=[],
                           listed_students=s.scalar(select(func.count()).select_from(Student)) or 0,
                           photos=photos, channel=scan.channel)
