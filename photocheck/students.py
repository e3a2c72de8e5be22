"""The stored no-consent list: importing a roster into the database and reading it back."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select

from photocheck.db import Database
from photocheck.db.models import ReferenceEncoding, ReferencePhoto, RosterImport, Student, utcnow
from photocheck.roster import (  # noqa: F401 (GUARD_*: re-exported)
    GUARD_LISTED_SHARE,
    GUARD_MIN_STUDENTS,
    GUARD_REMOVED_SHARE,
    Mapping,
    RosterError,
    RosterProblem,
    RosterRead,
    StudentRecord,
    load_mapping,
    read_roster_file,
)
from photocheck.screening import ReferenceSet, listed_for

# Fields compared to tell a changed student from an unchanged one on re-import.
_COMPARED = ("first_name", "last_name", "preferred_name", "campus", "grade", "opt_out", "opt_out_until", "strict")



@dataclass
class RosterChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    total: int = 0
    newly_listed: list[str] = field(default_factory=list)  # added, or protected more than before
    marked_for_recheck: int = 0  # approved photos that must be re-checked before publishing
    rows: int = 0                # students the file speaks about (rows past the mapping's filters)
    currently_listed: int = 0    # listed before the import (within --campus)
    listed_by_default: tuple[str, ...] = ()  # absent consent columns that listed every row
    needs_confirmation: list[str] = field(default_factory=list)  # why this import stops without --yes
    applied: bool = False        # False: a plan (dry run, or stopped), nothing was written


class RosterChangeNotConfirmed(Exception):
    """The import would make a large change (see GUARD_*); nothing was written. `.changes` is the plan."""

    def __init__(self, changes: RosterChanges):
        self.changes = changes
        super().__init__("; ".join(changes.needs_confirmation))


@dataclass
class StudentStatus:
    student_id: str
    name: str
    campus: str
    grade: str
    opt_out: str
    strict: bool
    references: int  # usable reference encodings for the current model

    @property
    def protected(self) -> bool:
        return self.references > 0


def _values(rec: StudentRecord) -> dict:
    return {
        "first_name": rec.first_name,
        "last_name": rec.last_name,
        "preferred_name": rec.preferred_name,
        "campus": rec.campus,
        "grade": rec.grade,
        "opt_out": ";".join(rec.opt_out),
        "opt_out_until": rec.opt_out_until,
        "strict": rec.strict,
    }


def _same_campus(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def plan_roster_import(db: Database | None, path: Path, *, mapping_path: Path | None = None,
                       campus: str | None = None, encoding: str | None = None) -> RosterChanges:
    """What import_roster would do, and whether it would stop for confirmation. Writes nothing.

    `db` None stands for a database that does not exist yet (an empty list).
    """
    read = _read(path, mapping_path, campus, encoding)
    current: dict[str, dict] = {}
    if db is not None:
        with db.session() as s:
            current = {st.student_id: {k: getattr(st, k) for k in _COMPARED} for st in s.scalars(select(Student))}
    return _plan(read, current, campus)


def import_roster(db: Database, path: Path, *, mapping_path: Path | None = None, user: str,
                  campus: str | None = None, encoding: str | None = None, confirmed: bool = False) -> RosterChanges:
    """Replace the no-consent list with the students in `path`, all or nothing.

    Students no longer listed are removed together with their reference photos and encodings:
    once consent is given, their biometric data has no reason to be kept.

    `campus`: replace only that campus's part of the list (a database shared by several
    campuses, each importing its own roster). Every row must name that campus; students of
    other campuses are left alone. Every listed student still counts in every scan.

    A large change (see GUARD_*) raises RosterChangeNotConfirmed, writing nothing, unless
    `confirmed`. `encoding` overrides the mapping's (or UTF-8 for a canonical file).
    """
    read = _read(path, mapping_path, campus, encoding)  # raises RosterError before anything is written
    with db.session(immediate=True) as s:
        existing = {st.student_id: st for st in s.scalars(select(Student))}
        # Decided inside the write transaction, on the list it replaces.
        changes = _plan(read, {sid: {k: getattr(st, k) for k in _COMPARED} for sid, st in existing.items()},
                        campus)
        if changes.needs_confirmation and not confirmed:
            raise RosterChangeNotConfirmed(changes)
        changes.applied = True
        before: dict[str, dict] = {}
        after: dict[str, dict] = {}
        changed = set(changes.changed)
        for rec in read.records:
            values = _values(rec)
            st = existing.get(rec.student_id)
            after[rec.student_id] = values
            if st is None:
                s.add(Student(student_id=rec.student_id, **values))
            elif rec.student_id in changed:
                before[rec.student_id] = {k: getattr(st, k) for k in values}
                for k, v in values.items():
                    setattr(st, k, v)
                st.updated_at = utcnow()
        from photocheck import audit

        for sid in changes.removed:
            st = existing[sid]
            refs = s.scalar(select(func.count()).select_from(ReferencePhoto).where(ReferencePhoto.student_pk == st.id))
            audit.record(s, actor=user, action="delete.student", student_id=sid, reference_photos_deleted=refs)
            s.execute(delete(ReferenceEncoding).where(ReferenceEncoding.student_pk == st.id))
            s.execute(delete(ReferencePhoto).where(ReferencePhoto.student_pk == st.id))
            s.delete(st)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        s.add(RosterImport(imported_by=user, source=str(path), sha256=digest,
                           added=len(changes.added), changed=len(changes.changed), removed=len(changes.removed)))
        newly = changes.added + [sid for sid in changes.changed if _protection_grew(before[sid], after[sid])]
        changes.newly_listed = sorted(newly)
        if newly:
            from photocheck.review import mark_for_recheck

            changes.marked_for_recheck = mark_for_recheck(s)
        extra = {"campus": campus} if campus else {}
        if changes.needs_confirmation:
            extra["confirmed"] = changes.needs_confirmation
        if changes.listed_by_default:
            extra["listed_every_row"] = list(changes.listed_by_default)
        audit.record(s, actor=user, action="roster.import", file_sha256=digest, added=changes.added,
                     changed=changes.changed, removed=changes.removed,
                     marked_for_recheck=changes.marked_for_recheck, **extra)
    if changes.removed:
        from photocheck.protect import scrub

        scrub(db)  # the removed students' encodings leave the WAL too, not only the tables
    return changes


def _read(path: Path, mapping_path: Path | None, campus: str | None, encoding: str | None) -> RosterRead:
    mapping: Mapping | None = load_mapping(mapping_path) if mapping_path else None
    read = read_roster_file(path, mapping, encoding=encoding)
    if campus is not None:
        if not campus.strip():
            raise RosterError([RosterProblem(str(path), None, None, "--campus needs a campus name")])
        wrong = [RosterProblem(str(path), rec.line, "campus", f"{rec.campus!r} is not campus {campus!r}: with "
                               f"--campus, the file holds that campus's students only")
                 for rec in read.records if not _same_campus(rec.campus, campus)]
        if wrong:
            raise RosterError(wrong)
    return read


def _plan(read: RosterRead, current: dict[str, dict], campus: str | None) -> RosterChanges:
    """The change from `current` (student_id -> stored values) to the file's list, and its guard."""
    changes = RosterChanges(total=len(read.records), rows=read.rows, listed_by_default=read.listed_by_default)
    for rec in read.records:
        old = current.get(rec.student_id)
        if old is None:
            changes.added.append(rec.student_id)
        elif old != _values(rec):
            changes.changed.append(rec.student_id)
        else:
            changes.unchanged += 1
    in_scope = [sid for sid, v in current.items() if campus is None or _same_campus(v["campus"], campus)]
    listed_now = {rec.student_id for rec in read.records}
    changes.removed = sorted(sid for sid in in_scope if sid not in listed_now)
    changes.currently_listed = len(in_scope)

    removed, added = len(changes.removed), len(changes.added)
    if removed > GUARD_MIN_STUDENTS and removed > GUARD_REMOVED_SHARE * changes.currently_listed:
        changes.needs_confirmation.append(
            f"it removes {removed} of the {changes.currently_listed} listed students "
            f"({removed / changes.currently_listed:.0%})")
    if (read.consent_decided and not read.listed_by_default and read.rows
            and changes.total > GUARD_LISTED_SHARE * read.rows and added > GUARD_MIN_STUDENTS):
        changes.needs_confirmation.append(
            f"its consent column lists {changes.total} of the {read.rows} students in the file "
            f"({changes.total / read.rows:.0%}), {added} of them new: is `means` right for that column?")
    return changes


def _protection_grew(old: dict, new: dict) -> bool:
    """Does the new roster row protect the student on some channel or day the old one did not?"""
    if new["strict"] and not old["strict"]:
        return True
    old_ch = set(old["opt_out"].split(";"))
    new_ch = set(new["opt_out"].split(";"))
    if "all" not in old_ch and ("all" in new_ch or new_ch - old_ch):
        return True
    if old["opt_out_until"] is not None and (new["opt_out_until"] is None
                                             or new["opt_out_until"] > old["opt_out_until"]):
        return True
    return False


def list_students(db: Database, model_name: str | None = None) -> list[StudentStatus]:
    """Every listed student with the number of usable references (for `model_name` if given)."""
    with db.session() as s:
        q = select(ReferenceEncoding.student_pk, func.count()).group_by(ReferenceEncoding.student_pk)
        if model_name:
            q = q.where(ReferenceEncoding.model_name == model_name)
        counts = dict(s.execute(q).all())
        return [
            StudentStatus(student_id=st.student_id, name=f"{st.first_name} {st.last_name}".strip(),
                          campus=st.campus, grade=st.grade, opt_out=st.opt_out, strict=st.strict,
                          references=counts.get(st.id, 0))
            for st in s.scalars(select(Student).order_by(Student.student_id))
        ]


def load_references(db: Database, model_name: str, model_version: str, *, channel: str | None = None,
                    today: date | None = None) -> ReferenceSet:
    """Listed students' encodings made by this exact model, decrypted; others count as unprotected.

    Only students whose opt-out applies to `channel` count (None = any channel: strictest).
    """
    return load_channel_references(db, model_name, model_version, [channel], today=today)[channel]


def load_channel_references(db: Database, model_name: str, model_version: str, channels,
                            *, today: date | None = None) -> dict[str | None, ReferenceSet]:
    """One ReferenceSet per channel (None = strictest), from one read of the database.

    Raises protect.KeyUnavailable / ProtectionError when the encodings cannot be decrypted: a
    student whose encoding cannot be read is never silently treated as merely unenrolled.
    """
    from photocheck.protect import decrypt_row, resolve_key

    today = today or date.today()
    key = resolve_key(db)
    with db.session() as s:
        students = s.execute(select(Student.student_id, Student.opt_out, Student.opt_out_until, Student.strict)
                             .order_by(Student.student_id)).all()
        rows = s.execute(
            select(Student.student_id, ReferenceEncoding)
            .join(ReferenceEncoding, ReferenceEncoding.student_pk == Student.id)
            .where(ReferenceEncoding.model_name == model_name, ReferenceEncoding.model_version == model_version)
            .order_by(Student.student_id, ReferenceEncoding.id)
        ).all()
        encodings: dict[str, list[np.ndarray]] = {}
        for sid, enc in rows:
            assert key is not None  # resolve_key raises when encodings exist without their key
            encodings.setdefault(sid, []).append(decrypt_row(key, enc))
    return {ch: ReferenceSet.build(encodings, [sid for sid, opt, until, strict in students
                                               if listed_for(opt, until, strict, ch, today)])
            for ch in channels}


def reference_thumbnail(db: Database, student_id: str) -> bytes | None:
    """The JPEG face thumbnail of a listed student's first accepted reference photo, decrypted;
    None when there is none (not enrolled, or enrolled before thumbnails were made)."""
    from photocheck.db.models import ReferenceThumbnail
    from photocheck.protect import decrypt_thumbnail, resolve_key

    with db.session() as s:
        thumb = s.scalar(select(ReferenceThumbnail).join(Student, Student.id == ReferenceThumbnail.student_pk)
                         .where(Student.student_id == student_id).order_by(ReferenceThumbnail.id).limit(1))
        if thumb is None:
            return None
        key = resolve_key(db)
        assert key is not None  # resolve_key raises when encrypted rows exist without their key
        return decrypt_thumbnail(key, thumb)


def roster_fingerprint(references: ReferenceSet) -> str:
    """Identifies the list and references a scan was made with (to know when results go stale)."""
    h = hashlib.sha256()
    for sid in sorted(set(references.student_ids) | set(references.unprotected)):
        h.update(sid.encode() + b"\0")
    h.update(np.ascontiguousarray(references.vectors, dtype="<f8").tobytes())
    return h.hexdigest()
