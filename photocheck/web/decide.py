"""Web review routes for deciding many photos at once, and the evidence pictures beside a decision.

Routes stay thin: the rules, the grouping and the bulk decisions are photocheck/review.py's.
"""
from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, request, url_for

from photocheck import review
from photocheck.protect import ProtectionError
from photocheck.review import SignoffError, SignResult
from photocheck.web.common import db, jpeg, safe_next

bp = Blueprint("decide", __name__)

FACE_PX = 160  # crops and reference thumbnails are shown at this size at most

# The way out of a refusal in the page's own terms, where the page offers it.
_WEB_WORDS = {
    "blocked": "photo {id} is blocked: a listed student is in it, so it is never approved as is. Reject it, or "
               "use Redact… to cover the face.",
    "no_redaction": "photo {id} has no verified redacted copy yet: use Redact… (you see a preview before anything "
                    "is saved).",
    "unscreened": "photo {id} could not be screened: it can only be rejected.",
    "strict": "photo {id} shows a student who must never be published, not even redacted: reject it.",
    "empty": "No photo selected: tick the photos to decide first (nothing is ever pre-selected).",
}


def refusal(rule: str, photo_id: int | None, message: str) -> str:
    """Why a decision was refused, naming what this site offers instead (else the library's words)."""
    words = _WEB_WORDS.get(rule)
    return words.format(id=photo_id) if words else message


def flash_results(results: list[SignResult], decision: str) -> None:
    """One line for what was decided, one per refused photo, each naming the photo."""
    done = [r for r in results if r.ok]
    verb = {"approve": "Approved", "reject": "Rejected", "redact": "Approved in redacted form"}[decision]
    if done:
        flash(f"{verb}: {len(done)} photo(s) ({', '.join(str(r.photo_id) for r in done)}).", "ok")
    for r in results:
        if not r.ok:
            flash(f"Refused photo {r.photo_id}: {refusal(r.rule, r.photo_id, r.message)}", "refused")


def _versions() -> dict[int, int]:
    """The photos ticked on the page, each with the version shown: photo=ID:VERSION fields."""
    out = {}
    for value in request.form.getlist("photo"):
        pid, _, version = value.partition(":")
        if not (pid.isdigit() and version.isdigit()):
            abort(400)
        out[int(pid)] = int(version)
    return out


def _back(scan_id: int):
    return redirect(safe_next(request.form.get("next")) or url_for("scans.sheet", scan_id=scan_id), 303)


@bp.post("/scans/<int:scan_id>/sign-selected")
def sign_selected(scan_id: int):
    decision = request.form.get("decision", "")
    try:
        results = review.sign_selected(db(), _versions(), reviewer=g.user.username, decision=decision,
                                       channel=request.form.get("channel") or None,
                                       note=request.form.get("note", "")[:2000])
    except SignoffError as exc:
        flash(refusal(exc.rule, None, str(exc)), "refused")
    else:
        flash_results(results, decision)
    return _back(scan_id)


@bp.post("/scans/<int:scan_id>/groups/<int:group>/sign")
def sign_group(scan_id: int, group: int):
    decision = request.form.get("decision", "")
    try:
        results = review.sign_group(db(), scan_id, group, reviewer=g.user.username, decision=decision,
                                    channel=request.form.get("channel") or None,
                                    note=request.form.get("note", "")[:2000], versions=_versions())
    except SignoffError as exc:
        flash(f"Burst group {group}: {refusal(exc.rule, None, str(exc))}", "refused")
    else:
        flash_results(results, decision)
    return _back(scan_id)


@bp.get("/faces/<int:face_id>/crop.jpg")
def face_crop(face_id: int):
    """The face cut from the scanned photo now; nothing is stored."""
    try:
        return jpeg(review.face_crop(db(), face_id, FACE_PX))
    except SignoffError:
        abort(404, f"no face with id {face_id}")
    except Exception:  # the photo file is gone or unreadable: the page says so in words
        abort(404, "the photo file cannot be read")


@bp.get("/faces/<int:face_id>/reference.jpg")
def face_reference(face_id: int):
    """The thumbnail made at enrolment of the listed student this face is, or may be."""
    try:
        data = review.face_reference(db(), face_id)
    except SignoffError:
        abort(404, f"no face with id {face_id}")
    except ProtectionError:
        abort(404, "the reference thumbnail cannot be decrypted with this machine's key")
    if data is None:
        abort(404, "no reference thumbnail for this student (enrolled before thumbnails were kept: enroll "
                   "the reference photos again)")
    return jpeg(data)
