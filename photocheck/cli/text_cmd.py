"""`photocheck check-text TEXT`."""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, open_db
from photocheck.config import ConfigError, check_channel


def check_text(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The text to check, or - to read standard input.",
                                        show_default=False)],
    channel: Annotated[str | None, typer.Option("--channel", metavar="CH",
                                                help="Count only students who opted out of this channel "
                                                     "(default: every opt-out counts).")] = None,
    db: DbOption = None,
) -> None:
    """Check a caption or post text for names of students on the no-consent list.

    Finds a listed student's full name in any order, case, accents and possessives ignored
    ("ZOË müller's", "Mueller, Zoe", "#ZoeMuller"), and flags a first name alone when it is
    rare enough to point at one listed student. Prints student ids, never names.

      photocheck check-text "Well played, Zoë Müller!"

      photocheck check-text - < caption.txt

    Exit status: 0 no listed student named, 1 a student named or possibly named (first name
    only), 2 usage or configuration error.
    """
    if text == "-":
        text = sys.stdin.read()
    if channel is not None:
        try:
            channel = check_channel(channel)
        except ConfigError as exc:
            fail(str(exc))
    from photocheck.names import NAMED
    from photocheck.textcheck import check_text as run_check

    findings = run_check(open_db(db), text, channel=channel)
    if not findings:
        console.print("No listed student named.")
        return
    for f in findings:
        what = "named" if f.level == NAMED else "first name only (may be them: review)"
        console.print(f"{f.student_id}\t{what}", highlight=False, markup=False)
    raise typer.Exit(EXIT_ATTENTION)
