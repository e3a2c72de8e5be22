"""`photocheck enroll DIR`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, open_db
from photocheck.config import current_user


def enroll(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Reference photos: DIR/<student_id>/*.jpg "
                                              "(several per student) or DIR/<student_id>.jpg.",
                                              show_default=False)],
    db: DbOption = None,
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is enrolling "
                                                "(default: $PHOTOCHECK_USER, else the OS user).")] = None,
) -> None:
    """Enroll reference photos of listed students.

    Each photo is checked: exactly one face, big and sharp enough. Rejected photos are listed
    with the reason. Photos of students not on the no-consent list are skipped and never
    stored. Students still without a usable reference are reported as UNPROTECTED: while any
    exists, every photo with a face needs review.
    """
    from rich.progress import Progress

    from photocheck.enroll import EnrollError, EnrollOutcome, find_reference_photos
    from photocheck.enroll import enroll as enroll_references
    from photocheck.protect import ProtectionError

    if not directory.is_dir():
        fail(f"not a folder: {directory}")
    database = open_db(db)
    total = sum(len(v) for v in find_reference_photos(directory).values())
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Enrolling", total=total)

        def shown(outcome: EnrollOutcome) -> None:
            progress.advance(task)
            if not outcome.accepted:
                progress.console.print(f"[yellow]rejected[/] {escape(outcome.path)} "
                                       f"({escape(outcome.student_id)}): {escape(outcome.reason)}", highlight=False)

        try:
            report = enroll_references(database, directory, on_photo=shown, actor=current_user(as_user))
        except (EnrollError, ProtectionError) as exc:
            fail(str(exc))
    if report.key_created:
        console.print(f"Created the encryption key for reference encodings: {escape(str(report.key_created))} "
                      "(mode 0600). Without it no encoding can be read: keep a copy somewhere safe, apart from "
                      "database backups.", highlight=False)
    for sid, paths in sorted(report.not_listed.items()):
        console.print(f"[yellow]skipped[/] {escape(sid)}: not on the no-consent list ({len(paths)} photo(s) "
                      "not stored)", highlight=False)
    console.print(f"Enrolled {report.accepted} reference photo(s), rejected {report.rejected}.")
    if report.unprotected:
        console.print(f"[bold red]UNPROTECTED[/]: {escape(', '.join(report.unprotected))} — no usable reference "
                      "photo; every photo with a face will need review.", highlight=False)
        raise typer.Exit(EXIT_ATTENTION)
