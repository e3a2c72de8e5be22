"""`photocheck redact PHOTO... --out DIR`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, open_db
from photocheck.config import current_user
from photocheck.results import REDACTION_STYLES as STYLES


def redact(
    photos: Annotated[list[str], typer.Argument(metavar="PHOTO...", help="Photo or clip ids (from `review list`) or paths.",
                                                show_default=False)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for the redacted copies.",
                                      show_default=False)] = ...,
    style: Annotated[str, typer.Option("--style", metavar="|".join(STYLES),
                                       help="fill: solid black box; pixelate: very coarse blocks.")] = "fill",
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is redacting.")] = None,
    db: DbOption = None,
) -> None:
    """Cover every listed (or possibly listed) student's face, irreversibly.

    Each face box is padded and filled (or coarsely pixelated) — never a light blur. The
    copy is then scanned again; if any listed face is still found it is deleted and the
    redaction refused. A clip's listed faces are covered in every frame (found every 0.1 s,
    tracked between) in an H.264 MP4 copy; its sound is copied unchanged, never checked. A verified copy can then be signed off with
    `photocheck review sign PHOTO --decision redact`. Photos of strict students cannot be
    redacted for publication at all.

    Exit status: 0 all redacted, 1 any refused, 2 usage error.
    """
    from photocheck.redact import RedactError
    from photocheck.redact import redact as run_redact
    from photocheck.review import SignoffError, resolve_photos

    database = open_db(db)
    try:
        ids = resolve_photos(database, photos)
        results = run_redact(database, ids, out, actor=current_user(as_user), style=style)
    except (SignoffError, RedactError) as exc:
        fail(str(exc))
    for r in results:
        if r.ok:
            console.print(f"[green]redacted[/] {r.photo_id} {escape(r.source)} -> {escape(r.output)}: "
                          f"{escape(r.message)}", highlight=False)
        else:
            console.print(f"[bold red]refused[/] {r.photo_id} {escape(r.source)}: {escape(r.message)}", highlight=False)
    if any(not r.ok for r in results):
        raise typer.Exit(EXIT_ATTENTION)
