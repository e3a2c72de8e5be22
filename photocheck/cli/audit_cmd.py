"""`photocheck audit ...`: the tamper-evident log."""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, open_db

app = typer.Typer(help="The audit trail: every import, enrolment, scan, sign-off, redaction and publish, "
                       "hash-chained so that changes to it are detected.", no_args_is_help=True)


@app.command("log")
def log_(
    action: Annotated[str | None, typer.Option("--action", metavar="ACTION",
                                               help="Only this action (e.g. signoff, publish, scan).")] = None,
    photo: Annotated[str | None, typer.Option("--photo", metavar="SHA256",
                                              help="Only events about this photo (sha256 or its prefix).")] = None,
    last: Annotated[int | None, typer.Option("--last", metavar="N", help="Only the newest N events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Show the audit log, oldest first: who did what, when, to which photo (sha256)."""
    from rich.table import Table

    from photocheck.audit import log

    events = log(open_db(db), action=action, photo_sha256=photo, limit=last)
    if as_json:
        typer.echo(json.dumps([asdict(e) for e in events], indent=2))
        return
    table = Table(title=f"Audit log ({len(events)} event(s))")
    for col in ("#", "when (UTC)", "who", "action", "photo sha256", "details"):
        table.add_column(col)
    for e in events:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(str(e.seq), e.at[:19].replace("T", " "), escape(e.actor), e.action,
                      (e.photo_sha256 or "")[:12], escape(details))
    console.print(table)


@app.command("verify")
def verify_(db: DbOption = None) -> None:
    """Check that no event was edited, deleted or reordered.

    Prints the head hash: keep a copy elsewhere (or compare with one kept earlier) to also
    detect a complete rewrite of the log. Exit status: 0 intact, 1 tampered.
    """
    from photocheck.audit import verify

    result = verify(open_db(db))
    if result.ok:
        console.print(f"[green]audit log intact[/]: {result.events} event(s), head {result.head_hash}")
        return
    console.print(f"[bold red]audit log TAMPERED[/] ({result.events} event(s) present):")
    for p in result.problems:
        console.print(f"  {escape(p)}", highlight=False)
    raise typer.Exit(EXIT_ATTENTION)
