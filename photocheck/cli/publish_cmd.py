"""`photocheck publish` and `photocheck recheck`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from photocheck.cli.common import EXIT_ATTENTION, DbOption, console, fail, open_db
from photocheck.config import SCHOOL_CHANNELS, current_user


def publish(
    photos: Annotated[list[str] | None, typer.Argument(metavar="[PHOTO]...", help="Photo ids or paths "
                                                       "(or use --scan).", show_default=False)] = None,
    channel: Annotated[str, typer.Option("--channel", metavar="CH", help=f"Where the photos will appear: one of "
                                         f"{', '.join(SCHOOL_CHANNELS)} (or $PHOTOCHECK_CHANNELS).",
                                         show_default=False)] = ...,
    to: Annotated[Path, typer.Option("--to", metavar="FOLDER", help="Where the publishable copies are written "
                                     "(created if missing), e.g. the folder your website or yearbook tool picks "
                                     "them up from; the originals are never moved or changed.",
                                     show_default=False)] = ...,
    scan: Annotated[int | None, typer.Option("--scan", metavar="ID", help="Every photo of this scan.")] = None,
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is publishing.")] = None,
    caption: Annotated[Path | None, typer.Option("--caption", metavar="FILE",
                                                 help="The post's caption (UTF-8 text): checked for names of "
                                                      "students who opted out of CHANNEL before anything is "
                                                      "published, and kept with the publication.")] = None,
    with_sound: Annotated[bool, typer.Option("--with-sound", help="Keep clips' sound (copied unchanged). "
                                             "photocheck never listens to it: a name said aloud identifies "
                                             "a child too, so listen to each clip first.")] = False,
    db: DbOption = None,
) -> None:
    """Write clean copies of the photos signed off for --channel to the --to folder; refuse the rest.

    Only photos a second person signed off for this channel leave (the redacted copy where
    that was the decision), and only if the file is still the one signed off. Each is
    re-encoded from its pixels — EXIF, GPS, XMP, IPTC, ICC and comments are stripped — and
    renamed <channel>-<photo id>.jpg, so no student name leaks through a file name. Clips
    become <channel>-<photo id>.mp4, re-encoded as H.264 without tags (title, date, GPS) and
    without sound unless --with-sound.
    manifest.json in that folder lists what was published. Every refused photo is listed with why.
    With --caption, a caption naming a listed student who opted out of --channel (or holding
    such a student's rare first name) stops the run: nothing is published, the ids are listed.

    Exit status: 0 all published, 1 any refused, 2 usage error (e.g. not a school channel).
    """
    from photocheck.publish import CaptionRefused, PublishError
    from photocheck.publish import publish as run_publish
    from photocheck.review import SignoffError, resolve_photos

    if not photos and scan is None:
        fail("give photo ids or paths, or --scan ID")
    text = None
    if caption is not None:
        from photocheck.textcheck import CaptionError, read_caption

        try:
            text = read_caption(caption)
        except CaptionError as exc:
            fail(str(exc))
    database = open_db(db)
    try:
        ids = resolve_photos(database, photos or [], scan_id=scan, pending_only=False)
        report = run_publish(database, ids, channel=channel, dest=to, actor=current_user(as_user), caption=text,
                             with_sound=with_sound)
    except CaptionRefused as exc:
        fail(str(exc), EXIT_ATTENTION)
    except (PublishError, SignoffError) as exc:
        fail(str(exc))
    for p in report.published:
        console.print(f"[green]published[/] {p.photo_id} -> {escape(p.file)} "
                      f"({'redacted, ' if p.decision == 'redact' else ''}signed off by {escape(p.signed_off_by)})",
                      highlight=False)
    for r in report.refused:
        console.print(f"[bold red]refused[/]   {r.photo_id} {escape(r.path)}: {escape(r.reason)}", highlight=False)
    console.print(f"{len(report.published)} published to {escape(report.dest)} for {report.channel}, "
                  f"{len(report.refused)} refused. Manifest: {escape(report.manifest or '')}", highlight=False)
    if report.refused:
        raise typer.Exit(EXIT_ATTENTION)


def recheck(
    as_user: Annotated[str | None, typer.Option("--as", metavar="USER", help="Who is re-checking.")] = None,
    db: DbOption = None,
) -> None:
    """Re-scan approved photos flagged by a roster change; print the take-down list.

    Importing a roster that lists a new student (or widens an opt-out) flags every approved
    photo with a face. This reads those photos again against the current list (enroll the
    new students' reference photos first). Photos that now show a listed student lose their
    sign-off; those already published are listed for take-down.

    Exit status: 0 nothing to take down, 1 something lost its sign-off or must be taken down.
    """
    from photocheck.recheck import recheck as run_recheck

    database = open_db(db)
    report = run_recheck(database, actor=current_user(as_user))
    if not report.items:
        console.print("Nothing to re-check.")
        return
    for i in report.items:
        mark = "[green]ok[/]     " if i.still_ok else "[bold red]pending[/]"
        console.print(f"{mark} {i.photo_id} {escape(i.path)}: {escape(i.message)}", highlight=False)
    if report.takedown:
        console.print(f"[bold red]TAKE DOWN[/] {len(report.takedown)} published photo(s) now showing a listed student:")
        for t in report.takedown:
            console.print(f"  {t.channel}: {escape(t.published_file)} (photo {t.photo_id}, {escape(t.source)}, "
                          f"published {t.published_at})", highlight=False)
    if report.takedown or any(not i.still_ok for i in report.items):
        raise typer.Exit(EXIT_ATTENTION)
