"""Plain result objects passed from screening to storage and reports.

They never carry encodings: reports and logs are built from these alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum


def printable_path(path: str | os.PathLike) -> str:
    """A path as text that can be stored, printed and written to reports.

    File names are bytes on POSIX; one that is not UTF-8 (an old camera, a Windows share)
    decodes with surrogate escapes that no database, terminal or report accepts. Those bytes are
    shown as `\\xNN` instead, so one odd name cannot crash a whole scan.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# A reviewer's sign-off decisions (review.py) and the redaction styles (redact.py): here, in a module
# without heavy imports, because the CLI needs them to build its --help.
DECISIONS = ("approve", "reject", "redact")
REDACTION_STYLES = ("fill", "pixelate")


class Verdict(StrEnum):
    """Per-photo outcome. Order of severity: error > blocked > review > clear (see SEVERITY)."""

    ERROR = "error"
    BLOCKED = "blocked"
    REVIEW = "review"
    CLEAR = "clear"


# Combining verdicts (a burst group, a clip's frames, a name found in the tags, a re-check):
# error is worst because an unreadable file could hide anything, so nothing may outrank it.
SEVERITY: dict[Verdict, int] = {Verdict.CLEAR: 0, Verdict.REVIEW: 1, Verdict.BLOCKED: 2, Verdict.ERROR: 3}

# Queues, reports and tables list blocked first: a listed student found is the reviewer's first
# job, then files to fix or exclude, then faces to look at, then the rest.
DISPLAY_ORDER: tuple[Verdict, ...] = (Verdict.BLOCKED, Verdict.ERROR, Verdict.REVIEW, Verdict.CLEAR)


def worst(*verdicts: Verdict | str) -> Verdict:
    """The most severe of the verdicts given (by SEVERITY)."""
    return max((Verdict(v) for v in verdicts), key=SEVERITY.__getitem__)


def display_rank(verdict: Verdict | str | None) -> int:
    """Position in DISPLAY_ORDER; anything else (e.g. "not screened") after every verdict."""
    try:
        return DISPLAY_ORDER.index(Verdict(verdict))
    except ValueError:
        return len(DISPLAY_ORDER)


class FaceStatus(StrEnum):
    """Why a single face counts the way it does."""

    LISTED = "listed"            # identified as a listed (no-consent) student -> blocked
    UNCERTAIN = "uncertain"      # in the uncertain distance band of a listed student -> review
    TOO_SMALL = "too_small"      # too small or blurred to rule out -> review
    UNPROTECTED = "unprotected"  # some listed student has no usable reference -> review
    NO_MATCH = "no_match"        # checked, no listed student within range


Box = tuple[int, int, int, int]  # upright pixel box: top, right, bottom, left


@dataclass
class FaceResult:
    box: Box
    status: FaceStatus
    detector_score: float = 0.0
    student_id: str | None = None      # set only for LISTED
    candidate_id: str | None = None    # nearest listed student (LISTED/UNCERTAIN)
    distance: float | None = None      # distance to that student's nearest reference
    reason: str = ""
    time_s: float | None = None        # clips: seconds from the start of the frame the box is in

    @property
    def width(self) -> int:
        return self.box[1] - self.box[3]


@dataclass
class PhotoResult:
    path: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    faces: list[FaceResult] = field(default_factory=list)
    sha256: str | None = None
    width: int | None = None            # upright size
    height: int | None = None
    error: str | None = None            # set when verdict is ERROR
    channel_verdicts: dict[str, Verdict] = field(default_factory=dict)  # per publication channel judged
    photo_id: int | None = None          # set when read back from the database
    signoff: str = "pending"            # pending|approved|redacted|rejected (+ by whom, for which channels)
    phash: str | None = None            # 64-bit dHash of the upright photo (16 hex digits), for grouping
    group: int | None = None            # burst group number in the report (set by groups.assign_groups)
    group_size: int = 1
    group_verdict: Verdict | None = None  # worst verdict among the group's members
    cached: bool = False                # result reused from an earlier scan of the same bytes
    text_hits: int = 0                  # listed students' names found in its embedded text / file name
    kind: str = "photo"                 # "photo" or "video" (a clip: one verdict, faces carry time_s)
    duration_s: float | None = None     # clips: length in seconds


@dataclass
class ScanSummary:
    """What reports need besides the photos themselves."""

    scan_id: int | None
    started_at: str
    finished_at: str | None
    owner: str
    roots: list[str]
    thresholds: dict
    model: dict                          # detector/encoder names and versions
    listed_students: int
    unprotected_students: list[str]      # ids of listed students without a usable reference
    photos: list[PhotoResult] = field(default_factory=list)
    channel: str | None = None           # None: every opt-out judged (strictest)

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for p in self.photos:
            out[p.verdict.value] += 1
        return out
