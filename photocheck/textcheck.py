"""The text check: listed students named in a photo's embedded text or file name, or in a caption.

A full name makes the photo `blocked` on every channel that student opted out of (as an
identified face does); a rare first name alone makes it `review` there (names.py says which
names count). Reasons give the student id and where the name was found, never the name.

Needs no face models, so it runs on every scan for every photo, including results reused
from the scan cache (the file name and the roster's names may have changed since).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable

from sqlalchemy import select

from photocheck.db import Database
from photocheck.db.models import Student
from photocheck.metadata import EmbeddedText, FoundText, read_embedded_text
from photocheck.names import FIRST_NAME, NAMED, NameIndex, Person
from photocheck.results import PhotoResult, Verdict, worst


@dataclass(frozen=True)
class TextFinding:
    student_id: str
    level: str    # names.NAMED | names.FIRST_NAME
    source: str   # where: "XMP dc:description", "file name", "caption"


@dataclass
class TextChecker:
    """The roster's names and opt-outs, ready to judge texts for any channel."""

    index: NameIndex
    listing: dict[str, tuple[str, date | None, bool]] = field(default_factory=dict)  # id -> opt_out, until, strict
    today: date = field(default_factory=date.today)
    channel: str | None = None  # the channel a result's main verdict is judged for (None: any)

    @classmethod
    def load(cls, db: Database, thresholds=None, *, channel: str | None = None,
             today: date | None = None) -> "TextChecker":
        if thresholds is None:
            from photocheck.thresholds import load_thresholds

            thresholds = load_thresholds()
        with db.session() as s:
            rows = s.execute(select(Student.student_id, Student.first_name, Student.last_name,
                                    Student.preferred_name, Student.opt_out, Student.opt_out_until,
                                    Student.strict)).all()
        people = [Person(r.student_id, r.first_name, r.last_name, r.preferred_name) for r in rows]
        return cls(index=NameIndex.build(people, thresholds.text.first_name_min_letters),
                   listing={r.student_id: (r.opt_out, r.opt_out_until, r.strict) for r in rows},
                   today=today or date.today(), channel=channel)

    def listed(self, student_id: str, channel: str | None) -> bool:
        from photocheck.screening import listed_for  # (numpy) only once a name is found

        opt_out, until, strict = self.listing[student_id]
        return listed_for(opt_out, until, strict, channel, self.today)

    def find(self, texts: Iterable[FoundText]) -> list[TextFinding]:
        """Names of students listed on some channel today, with where each was found."""
        out: dict[tuple[str, str], TextFinding] = {}
        for t in texts:
            for hit in self.index.find(t.text):
                if not self.listed(hit.student_id, None):
                    continue
                key = (hit.student_id, t.source)
                if key not in out or hit.level == NAMED:
                    out[key] = TextFinding(hit.student_id, hit.level, t.source)
        return list(out.values())

    def judge(self, findings: list[TextFinding], channel: str | None) -> tuple[Verdict, list[str]]:
        """The verdict the findings alone give on `channel` (None: any opt-out counts)."""
        relevant = [f for f in findings if self.listed(f.student_id, channel)]
        reasons = []
        for level, what in ((NAMED, "named in {}: {}"), (FIRST_NAME, "first name alone of a listed student in {} "
                                                                      "(may be them): {}")):
            by_source: dict[str, set[str]] = {}
            for f in relevant:
                if f.level == level:
                    by_source.setdefault(f.source, set()).add(f.student_id)
            reasons += [what.format(src, ", ".join(sorted(ids))) for src, ids in by_source.items()]
        if any(f.level == NAMED for f in relevant):
            return Verdict.BLOCKED, reasons
        return (Verdict.REVIEW, reasons) if relevant else (Verdict.CLEAR, [])

    def apply(self, result: PhotoResult, path: str | Path | None = None, *, data: bytes | None = None,
              confirmed: bool = False) -> PhotoResult:
        """Merge the text check of the photo's file into its (pixel) result, in place: the worse
        verdict wins on each channel, the reasons are added, `text_hits` set.

        The file is read again; if its bytes are no longer those the pixels were judged on, the
        photo is an `error` (it changed during the scan). `confirmed`: the caller has just checked
        that the file holds result.sha256, and `data` (for a photo) are those bytes: not read again.
        Never raises: a failure of the check itself sends the photo to review."""
        try:
            return self._apply(result, Path(result.path if path is None else path), data, confirmed)
        except Exception as exc:  # a parser bug must not stop the scan, nor pass as "no names"
            reason = f"the text check failed ({type(exc).__name__}: {exc}): names cannot be ruled out"
            result.text_hits = max(result.text_hits, 1)
            result.verdict = worst(result.verdict, Verdict.REVIEW)
            result.reasons = [*result.reasons, reason]
            result.channel_verdicts = {ch: worst(v, Verdict.REVIEW) for ch, v in result.channel_verdicts.items()}
            return result

    def _apply(self, result: PhotoResult, path: Path, data: bytes | None, confirmed: bool) -> PhotoResult:
        if result.kind == "video":  # a clip can be gigabytes: its name only (container tags are not read yet)
            if not confirmed and result.verdict is not Verdict.ERROR and result.sha256:
                from photocheck.images import file_sha256

                if file_sha256(path) != result.sha256:
                    return _error(result, "the file changed while it was being screened: scan it again")
            embedded = EmbeddedText()
            embedded.add("file name", path.name)
            return self._merge(result, embedded)
        if confirmed and data is not None:
            return self._merge(result, read_embedded_text(path, data))
        try:
            data = path.read_bytes()
        except OSError as exc:
            data = b""
            if result.verdict is not Verdict.ERROR:
                return _error(result, f"cannot read the file again to check its text: {exc.strerror or exc}")
        if data and result.sha256 and hashlib.sha256(data).hexdigest() != result.sha256:
            return _error(result, "the file changed while it was being screened: scan it again")
        return self._merge(result, read_embedded_text(path, data))

    def _merge(self, result: PhotoResult, embedded: EmbeddedText) -> PhotoResult:
        findings = self.find(embedded.texts)
        problems = [] if result.verdict is Verdict.ERROR else [
            f"{p}: a listed student's name in it cannot be ruled out" for p in embedded.problems]
        result.text_hits = len(findings) + len(problems)
        if not result.text_hits:
            return result
        verdict, reasons = self.judge(findings, self.channel)
        if problems:
            verdict, reasons = worst(verdict, Verdict.REVIEW), reasons + problems
        result.verdict = worst(result.verdict, verdict)
        result.reasons = [*result.reasons, *reasons]
        for ch, v in list(result.channel_verdicts.items()):
            ch_verdict = self.judge(findings, ch)[0]
            result.channel_verdicts[ch] = worst(worst(v, ch_verdict), Verdict.REVIEW if problems else Verdict.CLEAR)
        return result

    def check_text(self, text: str, source: str = "text") -> list[TextFinding]:
        return self.find([FoundText(source, text)])


def _error(result: PhotoResult, reason: str) -> PhotoResult:
    result.verdict, result.error = Verdict.ERROR, reason
    result.reasons = [*result.reasons, reason]
    result.channel_verdicts = {ch: Verdict.ERROR for ch in result.channel_verdicts}
    return result


MAX_CAPTION_BYTES = 100_000


class CaptionError(ValueError):
    """A caption file that cannot be read (missing, not UTF-8, empty, too long)."""


def read_caption(path: str | Path) -> str:
    """A caption file's text (UTF-8, surrounding whitespace removed), or CaptionError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaptionError(f"{path}: cannot read caption file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CAPTION_BYTES:
        raise CaptionError(f"{path}: caption file is over {MAX_CAPTION_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise CaptionError(f"{path}: caption is not UTF-8 text (byte {exc.start})") from None
    if not text:
        raise CaptionError(f"{path}: caption file is empty")
    return text


def caption_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_text(db: Database, text: str, *, channel: str | None = None, thresholds=None,
               source: str = "text") -> list[TextFinding]:
    """Listed students (on `channel`; None: any opt-out) named in `text`, full names first."""
    checker = TextChecker.load(db, thresholds, channel=channel)
    found = [f for f in checker.check_text(text, source) if checker.listed(f.student_id, channel)]
    return sorted(found, key=lambda f: (f.level != NAMED, f.student_id))
