"""The `photocheck` command: a thin shell over the library. Commands are split by group."""
from __future__ import annotations

import typer

from photocheck.cli import enroll_cmd, protect_cmd, roster_cmd, scan_cmd

app = typer.Typer(
    name="photocheck",
    help=(
        "Stop school photos of students without photo consent from being published.\n\n"
        "Typical run:\n\n"
        "  photocheck roster import no_consent.csv\n\n"
        "  photocheck enroll reference_photos/\n\n"
        "  photocheck scan event_photos/ --html report.html\n\n"
        "Nothing is ever approved automatically: every photo waits for a second person's sign-off."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(roster_cmd.app, name="roster")
app.command("enroll")(enroll_cmd.enroll)
app.command("scan")(scan_cmd.scan)
app.add_typer(protect_cmd.keys_app, name="keys")
app.command("forget")(protect_cmd.forget)
app.command("purge")(protect_cmd.purge)
app.command("backup")(protect_cmd.backup)


def main() -> None:
    app()
