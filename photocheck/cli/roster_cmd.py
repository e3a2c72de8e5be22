"""`photocheck roster ...`: the no-consent list."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, open_db
from photocheck.config import current_user

app = typer.Typer(help="Import and show the list of students without photo consent.", no_args_is_help=True)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Roster CSV: canonical columns "
                                         "student_id,first_name,last_name,campus,grade,opt_out, or an SIS "
                                         "export with --mapping.", show_default=False)],
    mapping: Annotated[str | None, typer.Option(
        "--mapping", metavar="NAME|FILE",
        help="TOML file mapping an SIS export onto the canonical columns, or the name of a shipped "
             "one: oneroster, powerschool.")] = None,
    campus: Annotated[str | None, typer.Option(
        "--campus", metavar="NAME",
        help="Replace only this campus's students (a database shared by several campuses, each importing "
             "its own roster); every row must name this campus.")] = None,
    db: DbOption = None,
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is importing "
                                                "(default: $PHOTOCHECK_USER, else the OS user).")] = None,
) -> None:
    """Import the no-consent list, replacing the previous one.

    All or nothing: a file with any bad row imports nothing and every problem is printed with
    its file, line and column. Students no longer on the list are removed together with their
    reference photos and encodings.

    With --campus NAME, only that campus's part of the list is replaced: students of other
    campuses stay as they are. Without it, the file is the whole list — on a database shared by
    several campuses, a file with one campus's students removes everyone else's.
    """
    from photocheck.roster import RosterError, find_mapping
    from photocheck.students import import_roster

    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        mapping_path = find_mapping(mapping) if mapping is not None else None
    except RosterError as exc:
        fail(escape(str(exc)))
    database = open_db(db)
    try:
        changes = import_roster(database, file, mapping_path=mapping_path, user=current_user(as_user), campus=campus)
    except RosterError as exc:
        console.print(f"[bold red]roster not imported[/] — nothing was changed:\n{escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_ATTENTION)
    console.print(f"Imported {changes.total} listed student(s) from {escape(str(file))}"
                  + (f" for campus {escape(campus)}" if campus else "") + ": "
                  f"{len(changes.added)} added, {len(changes.changed)} changed, {len(changes.removed)} removed, "
                  f"{changes.unchanged} unchanged.", highlight=False)
    for label, ids in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)):
        if ids:
            console.print(f"  {label}: {escape(', '.join(ids))}", highlight=False)
    if changes.removed:
        console.print("  Removed students' reference photos and encodings were deleted.")
    if changes.marked_for_recheck:
        console.print(f"[bold yellow]{changes.marked_for_recheck} approved photo(s) flagged for re-check[/]: newly "
                      "listed student(s) may be in them. Enroll their reference photos, then run `photocheck recheck`.")
    if changes.added:
        console.print("Next: enroll reference photos for new students with `photocheck enroll DIR`.")


@app.command("list")
def list_(db: DbOption = None) -> None:
    """Show each listed student and whether they are enrolled (have a usable reference photo)."""
    from rich.table import Table

    from photocheck.engine import model_info
    from photocheck.students import list_students

    database = open_db(db)
    students = list_students(database, model_info()["encoder"]["name"])
    table = Table(title=f"No-consent list ({len(students)} students)")
    for col in ("student id", "name", "campus", "grade", "opt-out", "references", "status"):
        table.add_column(col)
    for st in students:
        status = "[green]enrolled[/]" if st.protected else "[bold red]UNPROTECTED[/]"
        table.add_row(escape(st.student_id), escape(st.name), escape(st.campus), escape(st.grade),
                      escape(st.opt_out), str(st.references), status)
    console.print(table)
    unprotected = [st.student_id for st in students if not st.protected]
    if unprotected:
        console.print(f"[bold red]{len(unprotected)} student(s) have no usable reference photo[/]: every photo "
                      "with a face will need review until they are enrolled.")
