"""CSV report: one row per photo, for spreadsheets."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from photocheck.reports._atomic import atomic_open
from photocheck.results import FaceStatus, PhotoResult, ScanSummary

COLUMNS = ["path", "verdict", "faces", "listed_students", "review_faces", "reasons", "error", "sha256",
           "group", "group_size", "group_verdict", "channel_verdicts", "kind", "duration_s", "flagged_times"]

REVIEW_STATUSES = frozenset({FaceStatus.UNCERTAIN, FaceStatus.TOO_SMALL, FaceStatus.UNPROTECTED})

# Leading characters that make Excel/LibreOffice/Sheets treat a cell as a formula (OWASP
# "CSV injection"). Paths, reasons and error messages can carry user-controlled text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> object:
    """Prefix text that a spreadsheet would run as a formula with a `'`; numbers pass through."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def photo_row(photo: PhotoResult) -> list[object]:
    listed = [f.student_id for f in photo.faces if f.status == FaceStatus.LISTED and f.student_id]
    row = [
        str(photo.path),
        str(photo.verdict),
        len(photo.faces),
        ";".join(dict.fromkeys(listed)),  # each student once, in order of appearance
        sum(f.status in REVIEW_STATUSES for f in photo.faces),
        "; ".join(photo.reasons),
        photo.error or "",
        photo.sha256 or "",
        photo.group if photo.group is not None else "",
        photo.group_size,
        str(photo.group_verdict) if photo.group_verdict else "",
        ";".join(f"{ch}:{v}" for ch, v in photo.channel_verdicts.items()),  # e.g. web:blocked;yearbook:clear
        photo.kind,
        photo.duration_s if photo.duration_s is not None else "",
        flagged_times(photo),
    ]
    return [escape_cell(v) for v in row]


def flagged_times(photo: PhotoResult) -> str:
    """Clips: where each listed or review face is, e.g. "D0001 at 2.13 s; uncertain ~D0001 at 4.00 s"."""
    out = []
    for f in photo.faces:
        if f.time_s is None or f.status not in REVIEW_STATUSES | {FaceStatus.LISTED}:
            continue
        who = f.student_id if f.status == FaceStatus.LISTED else str(f.status) + (
            f" ~{f.candidate_id}" if f.candidate_id else "")
        out.append(f"{who} at {f.time_s:.2f} s")
    return "; ".join(out)


def write_csv(summary: ScanSummary, path: str | os.PathLike) -> Path:
    """Write the CSV report atomically; returns the path written."""
    # UTF-8 *with* BOM: Excel on Windows opens a BOM-less .csv in the ANSI code page and garbles
    # non-ASCII names and paths ("ZoÃ«"); the BOM makes it read UTF-8. LibreOffice, Python
    # (encoding="utf-8-sig") and pandas handle the BOM too. newline="" lets csv write its own
    # CRLF row ends (RFC 4180) and keeps newlines inside quoted cells intact.
    with atomic_open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for photo in summary.photos:
            w.writerow(photo_row(photo))
    return Path(path)
