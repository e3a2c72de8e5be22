"""`photocheck review ...`: the second person's sign-off queue."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, fits, open_db, print_records
from photocheck.config import SCHOOL_CHANNELS, current_user
from photocheck.results import DECISIONS

app = typer.Typer(help="The sign-off queue: a second person approves, rejects or redacts every photo "
                       "before it can be published.", no_args_is_help=True)

AsOption = Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is acting (default: "
                                              "$PHOTOCHECK_USER, else the OS user).", show_default=False)]
STATE_STYLE = {"pending": "yellow", "approved": "green", "redacted": "cyan", "rejected": "red"}


@app.command("list")
def list_(
    scan: Annotated[int | None, typer.Option("--scan", metavar="ID", help="Only this scan's photos.")] = None,
    verdict: Annotated[list[str] | None, typer.Option("--verdict", metavar="VERDICT",
                                                      help="Only photos with this verdict (blocked, review, "
                                                           "clear, error); repeatable.")] = None,
    state: Annotated[str, typer.Option("--state", metavar="STATE",
                                       help="pending, approved, redacted, rejected, or all.")] = "pending",
    recheck: Annotated[bool, typer.Option("--recheck", help="Only photos waiting for `photocheck recheck`.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    html: Annotated[Path | None, typer.Option("--html", metavar="FILE", help="With --scan: write that scan's "
                                              "contact sheet showing each photo's id and sign-off state.")] = None,
    db: DbOption = None,
) -> None:
    """Show the queue: each photo's id, verdict (and per channel), reasons and who scanned it.

    Use the ids with `photocheck review sign`. Blocked photos come first. Near-identical burst
    shots share a group (column "group": number and size) and are listed together in the place
    of their worst photo; `photocheck review sign --scan ID --group N` decides a group at once.
    """
    from rich.table import Table

    from photocheck.review import SignoffError, queue

    database = open_db(db)
    if html is not None:
        if scan is None:
            fail("--html needs --scan ID")
        from photocheck.reports import write_html
        from photocheck.review import scan_summary

        try:
            write_html(scan_summary(database, scan), html)
        except SignoffError as exc:
            fail(str(exc))
        console.print(f"HTML contact sheet with sign-off states: {escape(str(html))}", highlight=False)
    items = queue(database, scan_id=scan, verdicts=verdict, states=None if state == "all" else [state],
                  recheck_only=recheck)
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in items], indent=2))
        return
    title = f"Sign-off queue: {len(items)} photo(s) ({state})"
    table = Table(title=title)
    for col in ("id", "scan", "group", "photo", "verdict", "per channel", "reasons", "scanned by", "state"):
        table.add_column(col, no_wrap=True)  # shown only if every cell fits whole
    records = []
    for i in items:
        per = " ".join(f"{ch}:{v}" for ch, v in i.channel_verdicts.items() if v != i.verdict) or "same on all"
        st = f"[{STATE_STYLE.get(i.state, 'white')}]{i.state}[/]"
        if i.signed_by:
            st += f" by {escape(i.signed_by)}" + (f" for {escape(', '.join(i.channels))}" if i.channels else "")
        if i.needs_recheck:
            st += " [bold red]RECHECK[/]"
        group = f"{i.group} ({i.group_size})" if i.group_size > 1 else ""
        if group and i.group_verdict != i.verdict:
            group += f" {i.group_verdict}"
        table.add_row(str(i.photo_id), str(i.scan_id), group, escape(i.path), i.verdict, escape(per),
                      escape("; ".join(i.reasons)), escape(i.scanned_by), st)
        records.append((f"[bold]{i.photo_id}[/]  {i.verdict}  scan {i.scan_id}" + (f"  group {group}" if group else "")
                        + f"  {st}", [escape(i.path)],
                        [escape("; ".join(i.reasons)),
                         f"per channel: {escape(per)} · scanned by {escape(i.scanned_by)}"]))
    if fits(table):
        console.print(table)
    else:  # a narrow terminal: one record per photo, so no id, path or verdict is cut or split
        print_records(title, records)


@app.command("sign")
def sign_(
    photos: Annotated[list[str] | None, typer.Argument(metavar="[PHOTO]...", help="Photo ids (from `review list`) "
                                                       "or paths. Omit with --scan to sign that scan's pending photos.",
                                                       show_default=False)] = None,
    decision: Annotated[str, typer.Option("--decision", metavar="|".join(DECISIONS),
                                          help="approve: publishable as is; reject: never; redact: publishable "
                                               "in the verified redacted form made by `photocheck redact`.",
                                          show_default=False)] = ...,
    scan: Annotated[int | None, typer.Option("--scan", metavar="ID", help="Sign every pending photo of this "
                                             "scan (with --verdict, only those), e.g. all clear photos after "
                                             "looking at the contact sheet.")] = None,
    verdict: Annotated[list[str] | None, typer.Option("--verdict", metavar="VERDICT",
                                                      help="With --scan: only photos with this verdict.")] = None,
    group: Annotated[int | None, typer.Option("--group", metavar="N",
                                              help="With --scan: every pending photo of burst group N (the "
                                                   "\"group\" column of `review list`). A group holding a "
                                                   "blocked photo can only be rejected as a group.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", metavar="CH",
                                                help=f"Sign off for this channel only ({', '.join(SCHOOL_CHANNELS)}); "
                                                     "default: every channel the photo is allowed on.")] = None,
    note: Annotated[str, typer.Option("--note", metavar="TEXT", help="Why (kept with the sign-off).")] = "",
    as_user: AsOption = None,
    db: DbOption = None,
) -> None:
    """Sign off photos as the second person.

    Rules: you cannot sign photos of a scan you ran; a BLOCKED photo is never approved as
    is (reject it, or redact it and sign with --decision redact); a photo of a student
    marked strict in the roster cannot be approved, not even redacted; the sign-off holds
    only for the exact file (sha256) — if it changes, it is pending again.

    Exit status: 0 all signed, 1 any refused, 2 usage error.
    """
    from photocheck.review import GroupRefused, SignoffError, resolve_photos, sign, sign_group

    if decision not in DECISIONS:
        fail(f"--decision must be one of {', '.join(DECISIONS)}")
    if group is not None and (scan is None or photos or verdict):
        fail("--group needs --scan ID, and no photo ids or --verdict")
    if not photos and scan is None:
        fail("give photo ids or paths, or --scan ID")
    database = open_db(db)
    reviewer = current_user(as_user)
    try:
        if group is not None:
            results = sign_group(database, scan, group, reviewer=reviewer, decision=decision, channel=channel,
                                 note=note)
        else:
            ids = resolve_photos(database, photos or [], scan_id=scan, verdicts=verdict)
            results = sign(database, ids, reviewer=reviewer, decision=decision, channel=channel, note=note)
    except GroupRefused as exc:  # a rule refused the whole group: needs attention, not a usage error
        fail(str(exc), EXIT_ATTENTION)
    except SignoffError as exc:
        fail(str(exc))
    if not results:
        console.print("Nothing to sign: no pending photo matches.")
        return
    for r in results:
        mark = "[green]signed[/] " if r.ok else "[bold red]refused[/]"
        console.print(f"{mark} {r.photo_id} {escape(r.path)}: {escape(r.message)}", highlight=False)
    refused = sum(not r.ok for r in results)
    console.print(f"{len(results) - refused} signed, {refused} refused.")
    if refused:
        raise typer.Exit(EXIT_ATTENTION)


@app.command("reopen")
def reopen_(
    photos: Annotated[list[int], typer.Argument(metavar="PHOTO_ID...", help="Photo ids.", show_default=False)],
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (kept in the audit log).")] = "reopened",
    as_user: AsOption = None,
    db: DbOption = None,
) -> None:
    """Send signed-off photos back to the pending queue (their sign-off no longer holds)."""
    from photocheck.review import SignoffError, reopen

    database = open_db(db)
    for pid in photos:
        try:
            reopen(database, pid, actor=current_user(as_user), reason=reason)
        except SignoffError as exc:
            fail(str(exc))
        console.print(f"photo {pid}: pending again")
