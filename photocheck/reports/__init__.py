"""Scan reports: JSON (score_scan contract), CSV (spreadsheets), HTML (contact sheet).

Reports only present verdicts decided elsewhere; none of them approves a photo.
"""
from __future__ import annotations

import os
from pathlib import Path

from photocheck.reports.csv_report import write_csv
from photocheck.reports.html_report import write_html
from photocheck.reports.json_report import to_json_dict, write_json
from photocheck.results import ScanSummary

__all__ = ["to_json_dict", "write_csv", "write_html", "write_json", "write_reports"]

PathLike = str | os.PathLike


def write_reports(summary: ScanSummary, json: PathLike | None = None, csv: PathLike | None = None,
                  html: PathLike | None = None, *, thumbnail_px: int = 480) -> dict[str, Path]:
    """Write each report whose path is given; returns {"json"|"csv"|"html": path written}.

    JSON goes first: it is the cheap, complete record, so it exists even if the slower
    HTML (which reads every photo again for thumbnails) is interrupted.
    """
    written: dict[str, Path] = {}
    if json is not None:
        written["json"] = write_json(summary, json)
    if csv is not None:
        written["csv"] = write_csv(summary, csv)
    if html is not None:
        written["html"] = write_html(summary, html, thumbnail_px=thumbnail_px)
    return written
