"""`photocheck user ...`: reviewer accounts for the web review (`photocheck serve`)."""
from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import DbOption, console, fail, open_db
from photocheck.config import current_user

app = typer.Typer(help="Reviewer accounts for the web review (`photocheck serve`). The signed-in username "
                       "is who signs off: give the person who runs scans the same name as their "
                       "$PHOTOCHECK_USER (or OS user), so they cannot sign off their own scans.",
                  no_args_is_help=True)

StdinOption = Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of "
                                           "standard input (for scripts) instead of prompting.")]


def _read_password(from_stdin: bool) -> str:
    from photocheck.users import UserError, check_password

    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("--password-stdin: nothing on standard input")
        password = line.rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except UserError as exc:
        fail(str(exc))
    return password


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(metavar="USERNAME", help="Sign-in name (case-insensitive).",
                                            show_default=False)],
    display_name: Annotated[str, typer.Option("--name", metavar="TEXT", help="Name shown in the web pages.")] = "",
    password_stdin: StdinOption = False,
    db: DbOption = None,
) -> None:
    """Create an account. The password is asked twice (hidden), or read with --password-stdin;
    it is never a command-line argument (those show up in `ps` and shell history)."""
    from photocheck.users import UserError, add_user, get_user, normalise

    database = open_db(db)
    try:  # before asking for a password that would be thrown away
        if get_user(database, normalise(username)) is not None:
            fail(f"user {normalise(username)} already exists (use `photocheck user passwd` to change its password)")
    except UserError as exc:
        fail(str(exc))
    password = _read_password(password_stdin)
    try:
        acct = add_user(database, username, password, display_name=display_name, actor=current_user())
    except UserError as exc:
        fail(str(exc))
    console.print(f"user {escape(acct.username)} added", highlight=False)


@app.command("list")
def list_(db: DbOption = None) -> None:
    """Show the accounts (never their password hashes)."""
    from rich.table import Table

    from photocheck.users import list_users

    table = Table(title="Reviewer accounts")
    for col in ("username", "name", "created (UTC)", "state"):
        table.add_column(col)
    for a in list_users(open_db(db)):
        table.add_row(escape(a.username), escape(a.display_name), f"{a.created_at:%Y-%m-%d %H:%M}",
                      "[red]disabled[/]" if a.disabled else "active")
    console.print(table)


@app.command("disable")
def disable(
    username: Annotated[str, typer.Argument(metavar="USERNAME", show_default=False)],
    enable: Annotated[bool, typer.Option("--enable", help="Enable the account again instead.")] = False,
    db: DbOption = None,
) -> None:
    """Stop an account from signing in (takes effect on its next page load); --enable undoes it."""
    from photocheck.users import UserError, set_disabled

    try:
        acct = set_disabled(open_db(db), username, not enable, actor=current_user())
    except UserError as exc:
        fail(str(exc))
    console.print(f"user {escape(acct.username)} {'disabled' if acct.disabled else 'enabled'}", highlight=False)


@app.command("passwd")
def passwd(
    username: Annotated[str, typer.Argument(metavar="USERNAME", show_default=False)],
    password_stdin: StdinOption = False,
    db: DbOption = None,
) -> None:
    """Set a new password (asked twice, hidden; or --password-stdin)."""
    from photocheck.users import UserError, set_password

    database = open_db(db)
    password = _read_password(password_stdin)
    try:
        acct = set_password(database, username, password, actor=current_user())
    except UserError as exc:
        fail(str(exc))
    console.print(f"password of {escape(acct.username)} changed", highlight=False)
