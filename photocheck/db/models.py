"""The schema: every table photocheck stores, in one place.

Bystanders' encodings are never stored: faces keep only their box, status and the distance to
the nearest listed student. Reference encodings (biometric data of listed students) live only in
`reference_encodings` (and their face thumbnails in `reference_thumbnails`), encrypted
(photocheck/protect.py), and go with their student (ON DELETE CASCADE).
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A point in time, stored in UTC and always read back time-zone aware (UTC).

    SQLite has no time-zone type: a plain DateTime(timezone=True) comes back naive from it, and
    a report would print a time without its zone. Naive values are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Student(Base):
    """A student on the no-consent list (only listed students are stored)."""

    __tablename__ = "students"

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    # The name the student goes by, if the roster has one ("Bea" for Beatriz): checked in texts too.
    preferred_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    campus: Mapped[str] = mapped_column(String(200), default="")
    grade: Mapped[str] = mapped_column(String(20), default="")
    opt_out: Mapped[str] = mapped_column(String(200), default="all")  # ';'-joined channels
    opt_out_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    strict: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    references: Mapped[list[ReferencePhoto]] = relationship(
        back_populates="student", cascade="all, delete-orphan", passive_deletes=True
    )


class ReferencePhoto(Base):
    """One enrolment photo and the outcome of its quality check."""

    __tablename__ = "reference_photos"
    __table_args__ = (UniqueConstraint("student_pk", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    face_px: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    student: Mapped[Student] = relationship(back_populates="references")
    encoding: Mapped[ReferenceEncoding | None] = relationship(
        back_populates="photo", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )
    thumbnail: Mapped[ReferenceThumbnail | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )


class ReferenceEncoding(Base):
    """A listed student's face encoding, tied to the model that made it."""

    __tablename__ = "reference_encodings"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference_photo_id: Mapped[int] = mapped_column(
        ForeignKey("reference_photos.id", ondelete="CASCADE"), unique=True
    )
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    # AES-256-GCM: 12-byte nonce + ciphertext of the float64 little-endian vector + 16-byte tag,
    # bound to this row (see protect.encoding_aad). The key never enters the database.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32), default="")  # which key encrypted it (a fingerprint)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    photo: Mapped[ReferencePhoto] = relationship(back_populates="encoding")


class ReferenceThumbnail(Base):
    """A small face thumbnail of one accepted reference photo, shown to reviewers beside a match.

    Encrypted like the encodings (same key, AES-256-GCM bound to this row, protect.thumbnail_aad)
    and deleted with them by forget, purge and a roster import that drops the student.
    """

    __tablename__ = "reference_thumbnails"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference_photo_id: Mapped[int] = mapped_column(
        ForeignKey("reference_photos.id", ondelete="CASCADE"), unique=True
    )
    student_pk: Mapped[int] = mapped_column(ForeignKey("students.id", ondelete="CASCADE"), index=True)
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)  # 12-byte nonce + ciphertext of the JPEG + 16-byte tag
    key_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProtectionEvent(Base):
    """That a deletion, purge, key rotation or backup happened: who, when, counts. Never the data."""

    __tablename__ = "protection_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))  # forget|purge|keys-rotate|backup|upgrade
    detail: Mapped[str] = mapped_column(Text, default="")


class RosterImport(Base):
    __tablename__ = "roster_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    added: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)


class Scan(Base):
    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))  # who ran it: never their own reviewer
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running|finished|interrupted
    roots: Mapped[str] = mapped_column(Text)             # JSON list of paths given
    thresholds: Mapped[str] = mapped_column(Text)        # JSON of the thresholds used
    model: Mapped[str] = mapped_column(Text)             # JSON of detector/encoder ids
    roster_fingerprint: Mapped[str] = mapped_column(String(64))
    # The publication channel judged; None = every opt-out counts (strictest wins).
    channel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # sha256 over roster fingerprint + model info + thresholds fingerprint: results of scans with the
    # same key may be reused for files with the same sha256 (scan cache); None for scans made before 0003.
    cache_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # sha256 of the sorted absolute roots: an unfinished scan with the same roots_key and cache_key is
    # resumed by the next `photocheck scan` of the same paths.
    roots_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

    photos: Mapped[list[Photo]] = relationship(
        back_populates="scan", cascade="all, delete-orphan", passive_deletes=True, order_by="Photo.id"
    )


class Photo(Base):
    """One screened file in one scan; lands in the sign-off queue as 'pending'."""

    __tablename__ = "photos"
    __table_args__ = (UniqueConstraint("scan_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    verdict: Mapped[str] = mapped_column(String(10))  # error|blocked|review|clear
    reasons: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # 64-bit dHash (16 hex digits) of the upright photo, for burst/near-duplicate grouping in reports.
    phash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # id of the photo whose stored result this one reuses (scan cache), else None.
    cached_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending|approved|redacted|rejected: only a second person's sign-off moves it on (review.py);
    # nothing is ever auto-approved.
    signoff_state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    # Bumped by every sign-off: a sign-off is a conditional UPDATE on the version it read, so two
    # reviewers racing on one photo cannot both win.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # {"web": "clear", "social": "blocked", ...}: the verdict for each channel judged.
    channel_verdicts: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    # Set when a roster change may have made an approved photo unpublishable (see recheck).
    needs_recheck: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Listed students' names found in the photo's embedded text or file name (textcheck.py). Only
    # rows with none are reused by the scan cache: their verdict is the pixels' alone.
    text_hits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # "photo" or "video" (a clip screened as sampled frames; photocheck/video.py) and a clip's length.
    kind: Mapped[str] = mapped_column(String(10), default="photo", server_default="photo")
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    scan: Mapped[Scan] = relationship(back_populates="photos")
    faces: Mapped[list[Face]] = relationship(
        back_populates="photo", cascade="all, delete-orphan", passive_deletes=True, order_by="Face.id"
    )


class FileStat(Base):
    """The sha256 last computed for a file, with the file's stat at that moment (the scan's stat
    fast path, photocheck/filestat.py). Only a path's hash and stat: no result, no image data."""

    __tablename__ = "file_stats"

    path_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the absolute path's bytes
    device: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    ctime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    hashed_at_ns: Mapped[int] = mapped_column(BigInteger)  # wall clock when the bytes were read


class ScanKey(Base):
    """A scan's cache key and what the scan record needs from the models and the roster, for one
    set of inputs (scan._inputs_key: roster rows, encrypted encodings, thresholds, channel, date,
    code and installed packages), valid while the model files' stats are unchanged. Lets an
    unchanged rescan skip loading the engine and decrypting the encodings. No encoding, no name."""

    __tablename__ = "scan_keys"

    inputs_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    roster_fingerprint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(Text)         # JSON of engine.model_info
    listed_students: Mapped[int] = mapped_column(Integer)
    unprotected: Mapped[str] = mapped_column(Text)   # JSON list of student ids
    model_files: Mapped[str] = mapped_column(Text)   # JSON [[path, device, inode, size, mtime_ns, ctime_ns], ...]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Face(Base):
    """A face found in a photo: upright box and outcome. Never an encoding."""

    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    top: Mapped[int] = mapped_column(Integer)
    right: Mapped[int] = mapped_column(Integer)
    bottom: Mapped[int] = mapped_column(Integer)
    left: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    student_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # identified listed student
    candidate_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    distance: Mapped[float | None] = mapped_column(Float, nullable=True)
    detector_score: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    time_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # clips: seconds from the start

    photo: Mapped[Photo] = relationship(back_populates="faces")


class Signoff(Base):
    """A second person's decision on one photo, bound to the exact file bytes (sha256)."""

    __tablename__ = "signoffs"
    # One decision per photo version: a second insert for the same version is a lost race.
    __table_args__ = (UniqueConstraint("photo_id", "photo_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    photo_version: Mapped[int] = mapped_column(Integer)  # the version this decision moved on from
    reviewer: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(10))   # approve|reject|redact
    channels: Mapped[str] = mapped_column(String(200), default="")  # ';'-joined channels it allows
    sha256: Mapped[str] = mapped_column(String(64))      # the photo's bytes when signed
    redaction_id: Mapped[int | None] = mapped_column(ForeignKey("redactions.id", ondelete="SET NULL"),
                                                      nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # False once superseded (file changed, re-check found a listed student, signed again...).
    current: Mapped[bool] = mapped_column(Boolean, default=True)


class Redaction(Base):
    """A verified redacted copy: every listed face covered and a re-scan found none."""

    __tablename__ = "redactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    source_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    style: Mapped[str] = mapped_column(String(20))       # fill|pixelate
    faces_covered: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Publication(Base):
    """One photo copied out for one channel by `photocheck publish`."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    signoff_id: Mapped[int] = mapped_column(ForeignKey("signoffs.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    dest: Mapped[str] = mapped_column(Text)              # the folder published to
    file_name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))      # of the published (stripped) file
    caption: Mapped[str | None] = mapped_column(Text, nullable=True)  # `publish --caption`, checked for names
    caption_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    published_by: Mapped[str] = mapped_column(String(200))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit log (see audit.py).

    Holds who, when, what and ids/hashes only: never names, paths of reference photos or encodings.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # 1, 2, 3... no gaps
    at: Mapped[str] = mapped_column(String(40))          # ISO-8601 UTC, hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40), index=True)
    photo_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON of ids and counts
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The last event's seq and hash, kept apart so deleting the newest events is noticed too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class User(Base):
    """A reviewer account for `photocheck serve`: the signed-in username is who signs off.

    Only an argon2 hash of the password is stored (photocheck/users.py), never the password.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)  # stored casefolded
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
