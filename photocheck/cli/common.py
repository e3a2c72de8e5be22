"""Options and helpers every command shares."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from photocheck.config import DB_ENV, resolve_db_url

if TYPE_CHECKING:
    from photocheck.db import Database

console = Console()
err_console = Console(stderr=True)

# Exit codes: 0 all good, 1 something needs attention (blocked/review/error/bad data), 2 usage or configuration.
EXIT_ATTENTION = 1
EXIT_CONFIG = 2

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help=f"SQLAlchemy database URL (default: ${DB_ENV}, else a SQLite file in ~/.local/share/photocheck/).",
        show_default=False,
    ),
]


def fits(table: Table) -> bool:
    """True if `table` shows every cell whole, on one line, within the terminal's width."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1_000_000), table).maximum <= console.width


def print_records(title: str, records: list[tuple[str, list[str], list[str]]]) -> None:
    """The narrow-terminal layout of a listing: per record a heading line, lines that must stay
    whole (ids, paths: never broken by photocheck, the terminal may still fold a very long one),
    then text lines wrapped between words. Every part is rich markup."""
    console.print(f"[bold]{title}[/]", highlight=False)
    for heading, whole, text in records:
        console.print()
        console.print(heading, highlight=False, soft_wrap=True)
        for line in whole:
            console.print(f"    {line}", highlight=False, soft_wrap=True)
        for line in text:
            console.print(Padding(line, (0, 0, 0, 4), expand=False), highlight=False)


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def warn_data_dir() -> None:
    """Print (to stderr) the warning about a data folder open to other accounts, if it is."""
    from photocheck.datadir import data_dir_warning

    message = data_dir_warning()
    if message:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def open_db(url_flag: str | None) -> Database:
    warn_data_dir()
    from photocheck.db import open_database
    from photocheck.db.session import DatabaseError

    try:
        return open_database(resolve_db_url(url_flag))
    except DatabaseError as exc:
        fail(str(exc))
