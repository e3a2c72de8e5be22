"""`photocheck roster ...`: the no-consent list."""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, fits, open_db, print_records
from photocheck.config import current_user, resolve_db_url
from photocheck.roster import GUARD_LISTED_SHARE, GUARD_MIN_STUDENTS, GUARD_REMOVED_SHARE

if TYPE_CHECKING:
    from photocheck.students import RosterChanges

app = typer.Typer(help="Import and show the list of students without photo consent.", no_args_is_help=True)


# Exit status of `roster import` (0, 1 and 2 as for every command, see cli/common.py).
EXIT_NOT_CONFIRMED = 3
_SAMPLE = 20  # ids shown per kind of change when an import stops or is a dry run

_IMPORT_HELP = f"""Import the no-consent list, replacing the previous one.

All or nothing: a file with any bad row imports nothing and every problem is printed with
its file, line and column. Students no longer on the list are removed together with their
reference photos and encodings.

Safety stop: an import that would remove more than {GUARD_REMOVED_SHARE:.0%} of the listed
students (and more than {GUARD_MIN_STUDENTS}), or whose consent column lists more than {GUARD_LISTED_SHARE:.0%}
of the file's students while adding more than {GUARD_MIN_STUDENTS}, changes nothing: it prints the
counts and the ids concerned, and needs --yes. A consent column read the wrong way round does
exactly that. --dry-run shows what an import would do.

With --campus NAME, only that campus's part of the list is replaced: students of other
campuses stay as they are. Without it, the file is the whole list — on a database shared by
several campuses, a file with one campus's students removes everyone else's.

Exit status: 0 imported (--dry-run: it would import as is); 1 not imported, a problem in the
file or mapping (printed as file:line); 2 usage or configuration error (missing file, unknown
--encoding, bad database URL); {EXIT_NOT_CONFIRMED} not imported, a large change that needs --yes.
"""


@app.command("import", help=_IMPORT_HELP)
def import_(
    file: Annotated[Path, typer.Argument(help="Roster CSV: canonical columns "
                                         "student_id,first_name,last_name,campus,grade,opt_out, or an SIS "
                                         "export with --mapping.", show_default=False)],
    mapping: Annotated[str | None, typer.Option(
        "--mapping", metavar="NAME|FILE",
        help="TOML file mapping an SIS export onto the canonical columns, or the name of a shipped "
             "one: oneroster, powerschool.")] = None,
    encoding: Annotated[str | None, typer.Option(
        "--encoding", metavar="NAME",
        help="Text encoding of FILE, e.g. cp1252 for an Excel 'CSV (Windows)' file (default: UTF-8, or the "
             "mapping's encoding, which this overrides).")] = None,
    campus: Annotated[str | None, typer.Option(
        "--campus", metavar="NAME",
        help="Replace only this campus's students (a database shared by several campuses, each importing "
             "its own roster); every row must name this campus.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Show what the import would add, change and remove; change nothing (the database "
                          "is not even created).")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Import even a large change (see the safety stop above), after checking it.")] = False,
    db: DbOption = None,
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is importing "
                                                "(default: $PHOTOCHECK_USER, else the OS user).")] = None,
) -> None:
    from photocheck.db.session import DatabaseError, open_existing_database
    from photocheck.roster import RosterError, find_mapping
    from photocheck.students import RosterChangeNotConfirmed, import_roster, plan_roster_import

    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        mapping_path = find_mapping(mapping) if mapping is not None else None
    except RosterError as exc:
        fail(escape(str(exc)))
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            fail(f"unknown encoding {encoding!r} (e.g. utf-8, cp1252, latin-1, utf-16)")
    try:
        if dry_run:
            try:
                database = open_existing_database(resolve_db_url(db))
            except DatabaseError as exc:
                fail(str(exc))
            changes = plan_roster_import(database, file, mapping_path=mapping_path, campus=campus,
                                         encoding=encoding)
        else:
            changes = import_roster(open_db(db), file, mapping_path=mapping_path, user=current_user(as_user),
                                    campus=campus, encoding=encoding, confirmed=yes)
    except RosterError as exc:
        console.print(f"[bold red]roster not imported[/] — nothing was changed:\n{escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_ATTENTION)
    except RosterChangeNotConfirmed as exc:
        _warn_listed_by_default(exc.changes, file)
        console.print(f"[bold red]roster not imported[/] — nothing was changed: {escape(str(exc))}.", highlight=False)
        _print_plan(exc.changes, file, campus)
        console.print("Check the file and the mapping (a consent column read the wrong way round removes the "
                      "students who refused and lists the others), then run the same command with --yes to "
                      "import it.", highlight=False)
        raise typer.Exit(EXIT_NOT_CONFIRMED)
    _warn_listed_by_default(changes, file)
    if dry_run:
        console.print("[bold]Dry run[/] — nothing was changed.", highlight=False)
        _print_plan(changes, file, campus)
        if changes.needs_confirmation:
            console.print(f"[bold yellow]A real import would stop for --yes[/]: "
                          f"{escape('; '.join(changes.needs_confirmation))}.", highlight=False)
            raise typer.Exit(EXIT_NOT_CONFIRMED)
        return
    console.print(f"Imported {changes.total} listed student(s) from {escape(str(file))}"
                  + (f" for campus {escape(campus)}" if campus else "") + ": "
                  f"{len(changes.added)} added, {len(changes.changed)} changed, {len(changes.removed)} removed, "
                  f"{changes.unchanged} unchanged.", highlight=False)
    if changes.needs_confirmation:
        console.print(f"Confirmed with --yes: {escape('; '.join(changes.needs_confirmation))}.", highlight=False)
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


def _print_plan(changes: RosterChanges, file: Path, campus: str | None) -> None:
    console.print(f"{escape(str(file))} lists {changes.total} student(s)"
                  + (f" for campus {escape(campus)}" if campus else "")
                  + f"; {changes.currently_listed} listed now. Would be: {len(changes.added)} added, "
                  f"{len(changes.changed)} changed, {len(changes.removed)} removed, {changes.unchanged} kept "
                  "unchanged.", highlight=False)
    for label, ids in (("would add", changes.added), ("would change", changes.changed),
                       ("would remove", changes.removed)):
        if ids:
            more = f" ... and {len(ids) - _SAMPLE} more" if len(ids) > _SAMPLE else ""
            console.print(f"  {label}: {escape(', '.join(ids[:_SAMPLE]))}{more}", highlight=False)


def _warn_listed_by_default(changes: RosterChanges, file: Path) -> None:
    if changes.listed_by_default:
        cols = ", ".join(repr(c) for c in changes.listed_by_default)
        console.print(f"[bold yellow]WARNING: every row is listed[/] — consent column {escape(cols)} is not in "
                      f"{escape(str(file))}, and the mapping says a missing column lists every row "
                      f"(if_missing = \"withheld\"): all {changes.total} student row(s) are listed. Right only if "
                      "this file holds the no-consent students alone.", highlight=False)


@app.command("list")
def list_(db: DbOption = None) -> None:
    """Show each listed student and whether they are enrolled (have a usable reference photo)."""
    from rich.table import Table

    from photocheck.model_files import model_info
    from photocheck.students import list_students

    database = open_db(db)
    students = list_students(database, model_info()["encoder"]["name"])
    title = f"No-consent list ({len(students)} students)"
    table = Table(title=title)
    for col in ("student id", "name", "campus", "grade", "opt-out", "references", "status"):
        table.add_column(col, no_wrap=True)  # shown only if every cell fits whole
    records = []
    for st in students:
        status = "[green]enrolled[/]" if st.protected else "[bold red]UNPROTECTED[/]"
        table.add_row(escape(st.student_id), escape(st.name), escape(st.campus), escape(st.grade),
                      escape(st.opt_out), str(st.references), status)
        records.append((f"[bold]{escape(st.student_id)}[/]  {status}  {st.references} reference photo(s)",
                        [escape(st.name)],
                        [f"campus {escape(st.campus or '-')} · grade {escape(st.grade or '-')} · "
                         f"opt-out {escape(st.opt_out)}"]))
    if fits(table):
        console.print(table)
    else:  # a narrow terminal: one record per student, so no id or name is cut or split
        print_records(title, records)
    unprotected = [st.student_id for st in students if not st.protected]
    if unprotected:
        console.print(f"[bold red]{len(unprotected)} student(s) have no usable reference photo[/]: every photo "
                      "with a face will need review until they are enrolled.")
