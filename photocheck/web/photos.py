"""Web review pages about one photo: the photo page, its sign-off, redaction, and its pictures.

Routes stay thin: the rules and the queries are photocheck/review.py's and photocheck/redact.py's.
"""
from __future__ import annotations

import io
import json

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup
from PIL import Image

from photocheck.redact import STYLES, RedactError
from photocheck.redact import preview as redact_preview
from photocheck.redact import redact as run_redact
from photocheck.reports.html_report import clip_frame_times, face_box_html, faces_text, jpeg_thumbnail
from photocheck.review import (
    PhotoNotFound,
    SignoffError,
    channel_verdicts,
    current_signoff,
    decision_options,
    face_evidence,
    photo_detail,
    same_person,
    sign,
)
from photocheck.web import decide
from photocheck.web.common import db, engine_lock, face_engine, fit, jpeg, photo_or_404, safe_next

bp = Blueprint("photos", __name__)

SIZES = {"thumb": 480, "page": 1600}
BANNERS = ("changed", "strict", "recheck", "own_scan")  # refusal rules the photo page states in a banner


@bp.get("/photos/<int:photo_id>")
def photo(photo_id: int):
    try:
        detail = photo_detail(db(), photo_id)
    except PhotoNotFound as exc:
        abort(404, str(exc))
    p, scan, faces = detail.photo, detail.scan, detail.result.faces
    so = current_signoff(db(), photo_id)
    options = decision_options(db(), photo_id, reviewer=g.user.username)
    boxes = Markup("".join(face_box_html(f, p.width, p.height) for f in faces)) if p.width and p.height \
        else Markup("")
    frames = [{"t": t, "boxes": Markup("".join(face_box_html(f, p.width, p.height) for f in faces if f.time_s == t))
               if p.width and p.height else Markup("")}
              for t in clip_frame_times(faces)] if p.kind == "video" else []
    rules = set(options.rules.values())
    # Rules with a banner of their own on the page are not repeated in the "not offered" list.
    not_offered = {d: decide.refusal(options.rules[d], photo_id, options.refused[d])
                   for d in ("approve", "reject") if d in options.refused and options.rules[d] not in BANNERS}
    return render_template(
        "photo.html", p=p, scan=scan, verdicts=channel_verdicts(p, scan), faces_text=faces_text(faces),
        boxes=boxes, frames=frames, so=so, redaction=detail.redaction, reasons=_reasons(p), options=options,
        not_offered=not_offered, changed="changed" in rules, strict="strict" in rules,
        evidence=face_evidence(db(), photo_id), own=same_person(scan.owner, g.user.username), styles=STYLES,
        fit=fit(p.width, p.height), next=safe_next(request.args.get("next")))


@bp.post("/photos/<int:photo_id>/sign")
def sign_photo(photo_id: int):
    photo_or_404(photo_id)
    decision = request.form.get("decision", "")
    channel = request.form.get("channel") or None
    try:
        version = int(request.form.get("version", ""))
    except ValueError:
        abort(400)
    try:
        (result,) = sign(db(), [photo_id], reviewer=g.user.username, decision=decision, channel=channel,
                         note=request.form.get("note", "")[:2000], expected_version=version)
    except SignoffError as exc:
        flash("Refused: " + decide.refusal(exc.rule, photo_id, str(exc)), "refused")
    else:
        flash(("Signed: " + result.message) if result.ok else
              ("Refused: " + decide.refusal(result.rule, photo_id, result.message)),
              "ok" if result.ok else "refused")
    return redirect(safe_next(request.form.get("next")) or url_for("photos.photo", photo_id=photo_id), 303)


@bp.get("/photos/<int:photo_id>/redact")
def redact_page(photo_id: int):
    p, scan = photo_or_404(photo_id)
    style = request.args.get("style", "fill")
    if style not in STYLES:
        abort(404, f"unknown style {style!r}")
    try:
        redact_preview(db(), photo_id, style)
        error = None
    except RedactError as exc:
        error = str(exc)
    return render_template("redact.html", p=p, scan=scan, style=style, styles=STYLES, error=error,
                           fit=fit(p.width, p.height), next=safe_next(request.args.get("next")),
                           own=same_person(scan.owner, g.user.username))


@bp.post("/photos/<int:photo_id>/redact")
def redact_confirm(photo_id: int):
    photo_or_404(photo_id)
    style = request.form.get("style", "fill")
    nxt = safe_next(request.form.get("next"))  # the contact sheet the reviewer came from, if any
    try:
        version = int(request.form.get("version", ""))
    except ValueError:
        abort(400)
    try:
        with engine_lock():
            (res,) = run_redact(db(), [photo_id], current_app.extensions["photocheck_redact_dir"],
                                actor=g.user.username, style=style, engine=face_engine())
    except RedactError as exc:
        flash(f"Redaction refused: {exc}", "refused")
        return redirect(url_for("photos.redact_page", photo_id=photo_id,
                                style=style if style in STYLES else "fill", next=nxt), 303)
    if not res.ok:
        flash(f"Redaction refused: {res.message}", "refused")
        return redirect(url_for("photos.redact_page", photo_id=photo_id, style=style, next=nxt), 303)
    flash(f"Redacted copy verified: {res.message}.", "ok")
    (result,) = sign(db(), [photo_id], reviewer=g.user.username, decision="redact",
                     note=request.form.get("note", "")[:2000], expected_version=version)
    flash(("Signed: " if result.ok else "Refused: ") + result.message, "ok" if result.ok else "refused")
    return redirect(url_for("photos.photo", photo_id=photo_id, next=nxt), 303)


@bp.get("/photos/<int:photo_id>/image.jpg")
def image(photo_id: int):
    px = SIZES.get(request.args.get("size", "thumb"))
    if px is None:
        abort(404)
    p, _ = photo_or_404(photo_id)
    if p.kind == "video":  # a clip's picture: its first flagged frame (the boxes shown are its faces)
        faces = photo_detail(db(), photo_id).result.faces
        return _clip_frame(p.path, clip_frame_times(faces, 1)[0], px)
    try:
        return jpeg(jpeg_thumbnail(p.path, px, quality=85)[0])
    except Exception:  # gone, unreadable: the page says so in words
        abort(404, "the photo file cannot be read")


@bp.get("/photos/<int:photo_id>/frame.jpg")
def clip_frame(photo_id: int):
    p, _ = photo_or_404(photo_id)
    px = SIZES.get(request.args.get("size", "page"))
    try:
        t = float(request.args.get("t", "0"))
    except ValueError:
        t = -1.0
    if p.kind != "video" or px is None or not 0 <= t <= (p.duration_s or 0) + 1:
        abort(404, "no such frame")
    return _clip_frame(p.path, t, px)


def _clip_frame(path: str, t: float, px: int):
    """The clip's frame at `t` seconds as a JPEG response, read from the clip now."""
    from photocheck.video import frame_at

    try:
        rgb = frame_at(path, t, max_side=px)
    except Exception:  # gone, unreadable: the page says so in words
        abort(404, "the clip file cannot be read")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=85)
    return jpeg(buf.getvalue())


@bp.get("/photos/<int:photo_id>/preview.jpg")
def preview_image(photo_id: int):
    photo_or_404(photo_id)
    style = request.args.get("style", "fill")
    try:
        rgb = redact_preview(db(), photo_id, style)
    except RedactError as exc:
        abort(404, str(exc))
    im = Image.fromarray(rgb)
    im.thumbnail((SIZES["page"], SIZES["page"]))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return jpeg(buf.getvalue())


def _reasons(p) -> list[str]:
    return [r for r in json.loads(p.reasons or "[]") if r != p.error]  # the error is shown once, explained
