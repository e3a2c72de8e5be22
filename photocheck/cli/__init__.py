"""The `photocheck` command: a thin shell over the library. Commands are split by group."""
from __future__ import annotations

import gc
import os
import sys
from typing import Annotated

import typer
from typer.core import TyperOption

from photocheck.cli.common import EXIT_CONFIG, err_console
from photocheck.cli.lazy import lazy_group
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
    cls=lazy_group(lambda: app),  # builds only the command that runs
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


def main() -> None:
    # The imports so far made objects that live as long as the process (modules, classes, typer, rich):
    # keep the cycle collector from re-scanning them, and run it less often (cycles are rare garbage here).
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    try:
        app()
    except ThresholdsError as exc:
        if os.environ.get("PHOTOCHECK_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(EXIT_CONFIG)
