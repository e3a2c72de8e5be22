"""The `photocheck` command: a thin shell over the library. Commands are split by group."""
from __future__ import annotations

import typer

from photocheck.cli import audit_cmd, enroll_cmd, publish_cmd, redact_cmd, review_cmd, roster_cmd, scan_cmd

app = typer.Typer(
    name="photocheck",
    help=(
        "Stop school photos of students without photo consent from being published.\n\n"
        "Typical run:\n\n"
        "  photocheck roster import no_consent.csv\n\n"
        "  photocheck enroll reference_photos/\n\n"
        "  photocheck scan event_photos/ --html report.html\n\n"
        "  photocheck review list; photocheck review sign ID... --decision approve --as REVIEWER\n\n"
        "  photocheck publish --channel web --to out/ --scan ID\n\n"
        "Nothing is ever approved automatically: every photo waits for a second person's sign-off."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(roster_cmd.app, name="roster")
app.command("enroll")(enroll_cmd.enroll)
app.command("scan")(scan_cmd.scan)
app.add_typer(review_cmd.app, name="review")
app.command("redact")(redact_cmd.redact)
app.command("publish")(publish_cmd.publish)
app.command("recheck")(publish_cmd.recheck)
app.add_typer(audit_cmd.app, name="audit")


def main() -> None:
    app()
