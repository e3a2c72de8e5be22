"""The audit trail: an append-only, hash-chained log of every state change.

Each event's hash covers its own fields and the previous event's hash, so editing, deleting or
reordering any stored event breaks the chain at that point, and `verify` names it. Events are
numbered 1, 2, 3... without gaps, and the newest seq/hash is also kept in `audit_head`, so
deleting the newest events is noticed too. What the chain cannot show on its own is a complete
rewrite of log and head by someone with write access to the database: write down (or send
elsewhere) the head hash that `photocheck audit verify` prints to anchor it.

Events hold who, when, what, the photo's sha256 and ids/counts — never names, encodings or
reference photos (`details` is checked for that).

`record` must run inside the caller's transaction (opened with `db.session(immediate=True)`),
so the event is written if and only if the change it describes is.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photocheck.db import Database
from photocheck.db.models import AuditEvent, AuditHead
from photocheck.db.session import lock_for_write

GENESIS = "0" * 64

# Keys that must never appear in an event: the log is about acts, not people's faces or names.
_FORBIDDEN_KEYS = {"encoding", "encodings", "vector", "vectors", "first_name", "last_name", "name"}


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(seq: int, at: str, actor: str, action: str, photo_sha256: str | None, details: str,
               prev_hash: str) -> str:
    payload = _canonical([seq, at, actor, action, photo_sha256, details, prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_details(details: dict) -> None:
    for key, value in details.items():
        if key in _FORBIDDEN_KEYS:
            raise ValueError(f"audit events hold ids and hashes only, not {key!r}")
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise ValueError(f"audit event detail {key!r} is binary; only ids, hashes and counts belong here")


def record(s: Session, *, actor: str, action: str, photo_sha256: str | None = None, **details) -> AuditEvent:
    """Append one event in the caller's transaction (which should be `immediate`)."""
    return record_many(s, actor=actor, events=[(action, photo_sha256, details)])[0]


def record_many(s: Session, *, actor: str,
                events: Iterable[tuple[str, str | None, dict]]) -> list[AuditEvent]:
    """Append (action, photo_sha256, details) events in order, in the caller's transaction (which
    should be `immediate`): the chain's head is read once and the events written in one flush."""
    events = list(events)
    for _, _, details in events:
        _check_details(details)
    if not events:
        return []
    lock_for_write(s)  # PostgreSQL: one appender at a time, even if the caller forgot `immediate`
    head = s.get(AuditHead, 1)
    last = s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    out = []
    for action, photo_sha256, details in events:
        seq += 1
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        body = _canonical(details)
        ev = AuditEvent(seq=seq, at=at, actor=actor, action=action, photo_sha256=photo_sha256, details=body,
                        prev_hash=prev, hash=event_hash(seq, at, actor, action, photo_sha256, body, prev))
        out.append(ev)
        prev = ev.hash
    s.add_all(out)
    if head is None:
        s.add(AuditHead(id=1, seq=seq, hash=prev))
    else:
        head.seq, head.hash = seq, prev
    s.flush()  # a racing writer that slipped past the lock fails here on the unique seq/prev_hash
    return out


@dataclass
class Event:
    seq: int
    at: str
    actor: str
    action: str
    photo_sha256: str | None
    details: dict
    hash: str


def log(db: Database, *, action: str | None = None, photo_sha256: str | None = None,
        limit: int | None = None) -> list[Event]:
    """Events oldest first (the newest `limit` if given), optionally filtered."""
    with db.session() as s:
        q = select(AuditEvent)
        if action:
            q = q.where((AuditEvent.action == action) | AuditEvent.action.like(f"{action}.%"))
        if photo_sha256:
            # stored lower-case; PostgreSQL's LIKE is case-sensitive (SQLite's is not, for ASCII)
            q = q.where(AuditEvent.photo_sha256.like(f"{photo_sha256.lower()}%"))
        q = q.order_by(AuditEvent.seq.desc())
        if limit:
            q = q.limit(limit)
        rows = list(s.scalars(q))
    return [Event(seq=r.seq, at=r.at, actor=r.actor, action=r.action, photo_sha256=r.photo_sha256,
                  details=json.loads(r.details or "{}"), hash=r.hash) for r in reversed(rows)]


@dataclass
class Verification:
    events: int
    head_hash: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(db: Database) -> Verification:
    """Recompute the whole chain; every break is reported with the seq where it shows."""
    problems: list[str] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    with db.session() as s:
        head = s.get(AuditHead, 1)
        total = s.scalar(select(func.count()).select_from(AuditEvent)) or 0
        # Ordered by seq (the primary key), streamed: the log can be long.
        for ev in s.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
            count += 1
            if ev.seq != expected_seq:
                problems.append(f"event {expected_seq}" + (f"..{ev.seq - 1}" if ev.seq - 1 > expected_seq else "")
                                + " missing (deleted?)" if ev.seq > expected_seq else
                                f"event numbering broken at {ev.seq}")
            if ev.prev_hash != prev:
                problems.append(f"event {ev.seq}: does not follow the event before it (deleted or reordered)")
            recomputed = event_hash(ev.seq, ev.at, ev.actor, ev.action, ev.photo_sha256, ev.details, ev.prev_hash)
            if recomputed != ev.hash:
                problems.append(f"event {ev.seq}: contents do not match its hash (edited)")
            prev = ev.hash
            expected_seq = ev.seq + 1
    assert count == total
    if head is None:
        if count:
            problems.append("the chain head record is missing")
    elif head.seq != expected_seq - 1 or head.hash != prev:
        problems.append(f"the log ends at event {expected_seq - 1} but the head records event {head.seq}: "
                        "newest events deleted or head edited")
    return Verification(events=count, head_hash=prev, problems=problems)
