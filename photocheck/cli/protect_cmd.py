"""`photocheck keys ...`, `forget`, `purge`, `backup`: protecting listed students' biometric data."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import DbOption, console, err_console, fail, open_db
from photocheck.config import KEY_ENV, KEY_FILE_ENV, RETENTION_ENV, current_user, retention

AsOption = Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is acting "
                                              "(default: $PHOTOCHECK_USER, else the OS user).")]

keys_app = typer.Typer(help="The encryption key of reference encodings.", no_args_is_help=True)


def _warn_busy(scrubbed: bool) -> None:
    if not scrubbed:
        err_console.print("[yellow]warning:[/] the rows are deleted, but another process is using the database, so "
                          "their old bytes could not be wiped from its files yet (SQLite: its write-ahead log; "
                          "PostgreSQL: the table files, or the database role does not own the tables). "
                          "Run this again when it is idle.")


@keys_app.command("rotate")
def rotate(db: DbOption = None, as_user: AsOption = None) -> None:
    """Re-encrypt every reference encoding with a new key and replace the key file.

    The old key stops working: copies and backups of the database made before cannot be
    decrypted with the new key. Keep a copy of the new key file wherever you keep backups.
    """
    from photocheck.protect import ProtectionError, rotate_key

    database = open_db(db)
    try:
        r = rotate_key(database, actor=current_user(as_user))
    except ProtectionError as exc:
        fail(str(exc))
    if r.old_key_id is None:
        console.print(f"Created key {r.new_key_id} in {escape(str(r.path))} (there was none yet).", highlight=False)
    else:
        console.print(f"Key {r.old_key_id} replaced by {r.new_key_id} in {escape(str(r.path))}: "
                      f"{r.encodings} encoding(s) re-encrypted.", highlight=False)


@keys_app.command("status")
def status(db: DbOption = None) -> None:
    """Show where the key comes from and whether it decrypts this database's encodings."""
    from photocheck.protect import ProtectionError, key_status

    database = open_db(db)
    try:
        st = key_status(database)
    except ProtectionError as exc:
        fail(str(exc))
    console.print(f"key: {escape(st.source or 'none yet')}" + (f" (id {st.key_id})" if st.key_id else ""),
                  highlight=False)
    console.print(f"encrypted reference encodings: {st.encodings}"
                  + (f" (key {', '.join(st.stored_key_ids)})" if st.stored_key_ids else ""), highlight=False)
    if st.problem:
        fail(st.problem)


def forget(
    student_id: Annotated[str, typer.Argument(metavar="STUDENT_ID", help="The student whose biometric data goes.",
                                              show_default=False)],
    db: DbOption = None,
    as_user: AsOption = None,
) -> None:
    """Delete a student's reference encodings and reference-photo records, leaving no byte behind.

    The student stays on the no-consent list (if listed): until enrolled again they are
    UNPROTECTED and every photo with a face goes to review. To take a student off the list
    (consent given), re-import the roster without them: that deletes the same data.
    Only the fact that it happened is recorded.
    """
    from photocheck.protect import forget as forget_student

    database = open_db(db)
    r = forget_student(database, student_id, actor=current_user(as_user))
    console.print(f"Forgot {escape(student_id)}: deleted {r.encodings} encoding(s) and {r.reference_photos} "
                  "reference photo record(s).", highlight=False)
    if r.listed:
        console.print(f"[bold red]UNPROTECTED[/]: {escape(student_id)} is still on the no-consent list without a "
                      "reference photo; every photo with a face will need review until they are enrolled again.",
                      highlight=False)
    else:
        console.print(f"{escape(student_id)} is not on the no-consent list.", highlight=False)
    _warn_busy(r.scrubbed)


def purge(
    older_than: Annotated[str | None, typer.Option(
        "--older-than", metavar="DURATION",
        help=f"Delete data older than this: 90d, 12w, 6mo, 1y (default: ${RETENTION_ENV}, else 365d).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    db: DbOption = None,
    as_user: AsOption = None,
) -> None:
    """Delete scan results and reference encodings past their retention period.

    Scans (their photos' verdicts and face boxes) and reference photos/encodings created
    before the cutoff are deleted; students whose references go become UNPROTECTED until
    enrolled again (re-enroll after each picture day). Run it regularly, e.g. from cron.
    """
    from photocheck.protect import ProtectionError, parse_duration
    from photocheck.protect import purge as purge_data

    try:
        period = parse_duration(retention(older_than))
    except ProtectionError as exc:
        fail(str(exc))
    database = open_db(db)
    r = purge_data(database, period, actor=current_user(as_user), dry_run=dry_run)
    verb = "Would delete" if dry_run else "Deleted"
    console.print(f"{verb} data from before {r.cutoff}: {r.scans} scan(s) with {r.photos} photo result(s) and "
                  f"{r.faces} face(s); {r.encodings} encoding(s) and {r.reference_photos} reference photo record(s).",
                  highlight=False)
    _warn_busy(r.scrubbed)


def backup(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The backup file to create (must not exist).",
                                         show_default=False)],
    db: DbOption = None,
    as_user: AsOption = None,
) -> None:
    """Write a consistent copy of the database to FILE, safe while others work.

    SQLite: a database file (VACUUM INTO). PostgreSQL: a pg_dump custom-format archive (needs
    pg_dump and pg_restore on PATH; restore it with pg_restore).

    Encodings stay encrypted in the copy; the key is NOT in it. Keep the key file separately
    (restoring needs both). Backups hold personal data: keep them to the same retention period.
    """
    from photocheck.protect import ProtectionError
    from photocheck.protect import backup as backup_db

    database = open_db(db)
    try:
        path = backup_db(database, file, actor=current_user(as_user))
    except ProtectionError as exc:
        fail(str(exc))
    console.print(f"Backup written to {escape(str(path))} (integrity checked, mode 0600).", highlight=False)
    console.print(f"The encryption key is not in it: keep a copy of your key file (or ${KEY_ENV}; "
                  f"${KEY_FILE_ENV} moves the file) somewhere else that is safe.", highlight=False)
