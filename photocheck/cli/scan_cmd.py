"""`photocheck scan PATH...`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, err_console, fail, open_db
from photocheck.config import current_user
from photocheck.results import DISPLAY_ORDER, PhotoResult, Verdict

STYLE = {Verdict.BLOCKED: "bold red", Verdict.ERROR: "bold magenta", Verdict.REVIEW: "yellow",
         Verdict.CLEAR: "green"}


def scan(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Photos, video clips or folders (searched recursively).",
                                                show_default=False)],
    json_out: Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Write the JSON report here.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Write a CSV, one row per photo.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", metavar="FILE",
                                                  help="Write a self-contained HTML contact sheet.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", metavar="CH",
                                                help="Judge only the opt-outs that apply to this channel (web, social, "
                                                     "yearbook, newsletter, press). Default: every opt-out counts "
                                                     "(strictest), and a verdict per channel is kept.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1,
                                             help="Cores to use (default: all, at most 8). 1 screens in this process; "
                                                  "2 or more start one worker process per two cores, each screening "
                                                  "photos with one copy of the face models (decoding, face detection "
                                                  "on its cores, and encoding overlap).",
                                             show_default=False)] = None,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read and hash every file, even those whose size, "
                                         "times and inode are unchanged since the last scan hashed them.")] = False,
    db: DbOption = None,
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who runs the scan "
                                                "(default: $PHOTOCHECK_USER, else the OS user).")] = None,
) -> None:
    """Screen photos for students on the no-consent list.

    Each photo gets a verdict: BLOCKED (a listed student identified), REVIEW (a face that
    could be a listed student, too small or blurred to rule out, or any face while a listed
    student has no reference photo), CLEAR (every face checked, none listed) or ERROR (the
    file could not be read). Every photo, clear ones included, goes to the sign-off queue:
    a second person must review it before publication.

    Each photo's file name and embedded text (captions, keywords, people and face-region tags)
    are checked for listed students' names too: a full name blocks the photo, a rare first name
    alone sends it to review (see `photocheck check-text --help`).

    A folder that cannot be listed or a file that cannot be read (permissions, a network
    share that dropped) is an ERROR item naming the path and the OS error, as is a photo that
    changed while it was screened. Hidden photos are screened; hidden folders are skipped (and listed).

    Interrupted (Ctrl-C, a crash)? Run the same command again: the scan resumes where it
    stopped. Files screened before with the same list, models and thresholds, and identical
    files within one scan, are decoded once (matched by their sha256). A file whose size,
    modification and change times and inode are exactly those recorded when it was last hashed
    (and were already 2 s old then) is not read again for its sha256; --rehash reads every file.

    Exit status: 0 all clear, 1 anything blocked, in review or in error, 2 usage or
    configuration error, 130 interrupted.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from photocheck.protect import ProtectionError
    from photocheck.scan import ScanSetupError
    from photocheck.scan import scan as run_scan

    database = open_db(db)
    progress = Progress(TextColumn("Screening"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
                        TimeRemainingColumn(), console=err_console, transient=True)
    task = None

    def started(total: int) -> None:
        nonlocal task
        task = progress.add_task("scan", total=total, last="")

    def screened(result: PhotoResult) -> None:
        progress.update(task, advance=1, last=Path(result.path).name)
        if result.verdict in (Verdict.BLOCKED, Verdict.ERROR):
            progress.console.print(f"[{STYLE[result.verdict]}]{result.verdict.value.upper():7}[/] "
                                   f"{escape(result.path)}: {escape('; '.join(result.reasons))}", highlight=False)

    try:
        with progress:
            outcome = run_scan(database, paths, owner=current_user(as_user), channel=channel, jobs=jobs,
                               rehash=rehash, on_start=started, on_photo=screened)
    except (ScanSetupError, ProtectionError) as exc:  # no roster, or encodings without their key
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("[bold]Interrupted.[/] Every photo screened so far is stored; run the same command "
                          "again to resume.", highlight=False)
        raise typer.Exit(130)
    summary = outcome.summary

    from photocheck.reports import write_reports

    write_reports(summary, json=json_out, csv=csv_out, html=html_out)
    if outcome.resumed:
        err_console.print(f"Resumed unfinished scan {summary.scan_id}: {outcome.resumed} photo(s) were already "
                          "screened and were kept.", highlight=False)
    if outcome.cached:
        err_console.print(f"{outcome.cached} photo(s) reused stored results (same file contents, same list, "
                          "models and thresholds).", highlight=False)
    if outcome.duplicates:
        err_console.print(f"{outcome.duplicates} photo(s) are identical to another photo of this scan (same file "
                          "contents): screened once, each reported with the same result.", highlight=False)
    for s in outcome.skipped:
        err_console.print(f"[dim]skipped {escape(s.path)}: {escape(s.reason)}[/]", highlight=False)

    counts = summary.counts()
    table = Table(title=f"Scan {summary.scan_id}: {len(summary.photos)} photo(s)")
    table.add_column("verdict")
    table.add_column("photos", justify="right")
    table.add_column("meaning")
    meaning = {
        Verdict.BLOCKED: "a listed student is in the photo: do not publish",
        Verdict.REVIEW: "a face could not be ruled out: look closely",
        Verdict.ERROR: "file could not be screened: fix or exclude it",
        Verdict.CLEAR: "no listed student found: still needs sign-off",
    }
    for v in DISPLAY_ORDER:
        table.add_row(f"[{STYLE[v]}]{v.value}[/]", str(counts[v.value]), meaning[v])
    console.print(table)
    if summary.unprotected_students:
        console.print(f"[bold red]UNPROTECTED[/]: {escape(', '.join(summary.unprotected_students))} have no usable "
                      "reference photo; photos with faces were sent to review.", highlight=False)
    for label, path in (("JSON", json_out), ("CSV", csv_out), ("HTML", html_out)):
        if path:
            console.print(f"{label} report: {escape(str(path))}", highlight=False)
    console.print(f"All {len(summary.photos)} photo(s) are pending a second person's sign-off.")
    if counts["blocked"] or counts["review"] or counts["error"]:
        raise typer.Exit(EXIT_ATTENTION)
