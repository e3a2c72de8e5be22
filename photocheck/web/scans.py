"""Web review pages over scans: the list of scans, a scan's queue and its contact sheet.

Routes stay thin: the queries, the grouping and the order are photocheck/review.py's.
"""
from __future__ import annotations

from flask import Blueprint, abort, g, render_template, request
from markupsafe import Markup

from photocheck.config import school_channels
from photocheck.reports.html_report import clip_frame_times, face_box_html, faces_text
from photocheck.results import DISPLAY_ORDER
from photocheck.review import (
    SIGNOFF_STATES,
    SignoffError,
    decision_options,
    face_evidence,
    group_decisions,
    page_of,
    same_person,
    scan_overviews,
    scan_view,
)
from photocheck.web.common import db

bp = Blueprint("scans", __name__)

PAGE_SIZE = 48  # photos per contact-sheet page (burst groups are never split)


@bp.get("/")
def index():
    rows = [dict(scan=o.scan, counts=o.counts, pending=o.pending, total=o.total,
                 own=same_person(o.scan.owner, g.user.username)) for o in scan_overviews(db())]
    return render_template("scans.html", rows=rows, verdicts=[v.value for v in DISPLAY_ORDER])


def _scan_view(scan_id: int) -> dict:
    """Photos of one scan for a channel and a state, in burst groups, worst first (review.scan_view)."""
    channel = request.args.get("channel", "")
    if channel and channel not in school_channels():
        abort(404, f"unknown channel {channel!r}")
    state = request.args.get("state", "pending")
    if state not in SIGNOFF_STATES + ("all",):
        abort(404, f"unknown state {state!r}")
    try:
        view = scan_view(db(), scan_id, channel=channel or None, state=state)
    except SignoffError:
        abort(404, f"no scan with id {scan_id}")
    return dict(view=view, summary=view.summary, blocks=view.blocks, channel=channel, state=state,
                count=view.count, channels=school_channels(), states=SIGNOFF_STATES,
                own=same_person(view.summary.owner, g.user.username))


@bp.get("/scans/<int:scan_id>")
def queue(scan_id: int):
    view = _scan_view(scan_id)
    for members in view["blocks"]:
        for it in members:
            it.faces_text = faces_text(it.photo.faces)
    return render_template("queue.html", **view)


@bp.get("/scans/<int:scan_id>/sheet")
def sheet(scan_id: int):
    view = _scan_view(scan_id)
    try:
        page = int(request.args.get("page", "1"))
    except ValueError:
        page = 1
    view["blocks"], view["pages"] = page_of(view["blocks"], page, PAGE_SIZE)
    view["page"] = min(max(page, 1), view["pages"])
    for members in view["blocks"]:
        for it in members:
            p = it.photo
            shown = _shown_faces(p.faces, p.kind)
            it.boxes = Markup("".join(face_box_html(f, p.width, p.height) for f in shown)) \
                if p.width and p.height else Markup("")
            it.faces_text = faces_text(p.faces)
            # What the rules allow now (the file's hash is checked when deciding, not for every card).
            it.options = decision_options(db(), p.photo_id, reviewer=g.user.username, check_file=False)
            it.evidence = face_evidence(db(), p.photo_id) if p.faces else []
            it.selectable = it.verdict == "clear" and "approve" in it.options.decisions
        _group_actions(members)
    items = [it for members in view["blocks"] for it in members]
    for i, it in enumerate(items):  # after a decision, the page comes back at the next photo
        it.next_id = items[min(i + 1, len(items) - 1)].photo.photo_id
    return render_template("sheet.html", any_selectable=any(it.selectable for it in items), **view)


def _shown_faces(faces: list, kind: str | None) -> list:
    """The faces boxed on a card's picture: for a clip, only those in the frame shown."""
    if kind != "video":
        return faces
    t = clip_frame_times(faces, 1)[0]
    return [f for f in faces if f.time_s == t]


def _group_actions(members: list) -> None:
    """The one-click decisions a burst group's header offers (review.group_decisions)."""
    head = members[0]
    head.group_pending = [it for it in members if it.state == "pending"]
    head.group_decisions = group_decisions(str(head.photo.group_verdict or head.verdict),
                                           [it.options.decisions for it in head.group_pending]) \
        if len(members) > 1 else []
