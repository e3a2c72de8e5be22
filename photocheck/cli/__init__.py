"""The `photocheck` command: a thin shell over the library. Commands are split by group."""
from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.core import TyperOption

from photocheck.cli import (
    audit_cmd,
    enroll_cmd,
    protect_cmd,
    publish_cmd,
    redact_cmd,
    review_cmd,
    roster_cmd,
    scan_cmd,
    serve_cmd,
    text_cmd,
    user_cmd,
)
from photocheck.cli.common import EXIT_CONFIG, err_console
from photocheck.thresholds import ThresholdsError

_option_type = TyperOption.display_type_rich


def _no_type_after_flags(self, ctx):
    """Flags take no value, but typer's --help writes "<bool>" after them: show them plain."""
    return None if self.is_flag else _option_type(self, ctx)


TyperOption.display_type_rich = _no_type_after_flags

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
        "Or review in a browser: photocheck user add NAME; photocheck serve\n\n"
        "Nothing is ever approved automatically: every photo waits for a second person's sign-off."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from photocheck import __version__

        typer.echo(f"photocheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    pass


app.add_typer(roster_cmd.app, name="roster")
app.command("enroll")(enroll_cmd.enroll)
app.command("scan")(scan_cmd.scan)
app.command("check-text")(text_cmd.check_text)
app.add_typer(review_cmd.app, name="review")
app.command("redact")(redact_cmd.redact)
app.command("publish")(publish_cmd.publish)
app.command("recheck")(publish_cmd.recheck)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(protect_cmd.keys_app, name="keys")
app.command("forget")(protect_cmd.forget)
app.command("purge")(protect_cmd.purge)
app.command("backup")(protect_cmd.backup)
app.add_typer(user_cmd.app, name="user")
app.command("serve")(serve_cmd.serve)


def main() -> None:
    try:
        app()
    except ThresholdsError as exc:
        if os.environ.get("PHOTOCHECK_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_CONFIG)
