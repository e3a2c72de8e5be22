"""Options and helpers every command shares."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

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


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def open_db(url_flag: str | None) -> Database:
    from photocheck.db import open_database
    from photocheck.db.session import DatabaseError

    try:
        return open_database(resolve_db_url(url_flag))
    except DatabaseError as exc:
        fail(str(exc))
