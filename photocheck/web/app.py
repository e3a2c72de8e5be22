"""The Flask application behind `photocheck serve`.

Security model (see README "Web review"): every page but sign-in needs a session; the session
cookie is signed with a secret kept 0600 in the data directory, HttpOnly and SameSite=Lax;
every POST carries a CSRF token (Flask-WTF); the signed-in username is the reviewer the library
checks ("not your own scan"); pages show student ids like the reports, never names or encodings.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import stat
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup
from PIL import Image
from sqlalchemy import func, select

from photocheck import audit, datadir, users
from photocheck.config import data_dir, resolve_db_url, school_channels
from photocheck.db import open_database
from photocheck.db.models import Photo, Redaction, Scan
from photocheck.redact import STYLES, RedactError
from photocheck.redact import preview as redact_preview
from photocheck.redact import redact as run_redact
from photocheck.reports.html_report import (
    VERDICT_ORDER,
    _box,
    _faces_text,
    clip_frame_times,
    explain_error,
    jpeg_thumbnail,
)
from photocheck.results import FaceResult, FaceStatus
from photocheck.review import (
    SIGNOFF_STATES,
    SignoffError,
    channel_verdicts,
    current_signoff,
    decision_options,
    face_evidence,
    group_decisions,
    page_of,
    same_person,
    scan_view,
    sign,
)
from photocheck.web import decide

SECRET_FILE = "web-secret.key"
SESSION_HOURS = 8
SIZES = {"thumb": 480, "page": 1600}
STATES = SIGNOFF_STATES
PAGE_SIZE = 48  # photos per contact-sheet page (burst groups are never split)
BANNERS = ("changed", "strict", "recheck", "own_scan")  # refusal rules the photo page states in a banner
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1"]

CSP = ("default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


def load_secret_key(path: Path | None = None) -> bytes:
    """The session-signing secret: made once (32 random bytes), kept 0600 in the data directory."""
    path = path or data_dir() / SECRET_FILE
    if not path.exists():
        datadir.make_dir(path.parent)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            os.fchmod(fd, 0o600)  # whatever the umask
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o600)  # readable by others would let them forge sessions
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < 32:
        raise ValueError(f"{path}: session secret too short; delete the file to make a new one")
    return key


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _fit(width: int | None, height: int | None) -> str:
    """Inline style sizing a big picture box: full width, but at most 80% of the window's height."""
    if not width or not height:
        return "width:100%"
    return f"width:min(100%, calc(80vh * {width / height:.4f}))"


def _jpeg(data: bytes):
    return data, 200, {"Content-Type": "image/jpeg"}


def create_app(db_url: str | None = None, *, secret_key: bytes | None = None, redact_dir: Path | None = None,
               trusted_hosts: list[str] | None = None, engine=None) -> Flask:
    """The web review over the database at `db_url` (default as the CLI: --db, $PHOTOCHECK_DB, data dir).

    `redact_dir`: where confirmed redacted copies are written (default: <data dir>/redacted).
    `trusted_hosts`: Host headers accepted (serve passes the loopback names when bound to loopback,
    which also stops DNS-rebinding pages from talking to it). `engine`: a FaceEngine to reuse.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or load_secret_key(),
        SESSION_COOKIE_NAME="photocheck_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,
        MAX_CONTENT_LENGTH=64 * 1024,  # forms only: no uploads
    )
    allowed_hosts = {h.strip("[]").casefold() for h in trusted_hosts} if trusted_hosts else None

    @app.before_request
    def check_host():  # registered before CSRFProtect's check, so it runs first
        if allowed_hosts is not None and _host_name(request.headers.get("Host", "")) not in allowed_hosts:
            return render_template("error.html", title="Wrong address",
                                   message="This server only answers requests addressed to this machine "
                                           "(127.0.0.1 or localhost)."), 400
        return None

    CSRFProtect(app)
    app.jinja_env.filters["fromjson"] = json.loads
    app.jinja_env.filters["explain_error"] = explain_error
    db = open_database(resolve_db_url(db_url))
    app.extensions["photocheck_db"] = db
    redact_dir = Path(redact_dir) if redact_dir else data_dir() / "redacted"
    engine_lock = threading.Lock()  # FaceEngine is not thread-safe; waitress serves with threads
    engines = [engine]

    def face_engine():
        if engines[0] is None:
            from photocheck.engine import FaceEngine

            engines[0] = FaceEngine()
        return engines[0]

    # --- the session ------------------------------------------------------------------------------

    @app.before_request
    def require_signin():
        if request.routing_exception is not None or request.endpoint in ("signin", "static"):
            return None  # unknown URL or untrusted Host header: Flask answers 404/400 without a page
        name = session.get("user")
        acct = users.get_user(db, name) if name else None
        if acct is None or acct.disabled or session.get("token") != acct.token:
            session.clear()
            if request.method == "GET":
                return redirect(url_for("signin", next=request.full_path.rstrip("?")))
            abort(401)
        g.user = acct
        return None

    @app.after_request
    def headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("error.html", title="Form refused",
                               message="The form had no valid CSRF token (it expired, or did not come from "
                                       "this site). Nothing was changed: reload the page and try again."), 400

    @app.errorhandler(401)
    def unauthorised(exc):
        return render_template("error.html", title="Sign in first",
                               message="Your session has ended. Nothing was changed: sign in again."), 401

    @app.errorhandler(404)
    def not_found(exc):
        return render_template("error.html", title="Not found", message=str(exc.description)), 404

    @app.route("/signin", methods=["GET", "POST"])
    def signin():
        error = None
        if request.method == "POST":
            acct = users.authenticate(db, request.form.get("username", ""), request.form.get("password", ""))
            if acct is not None:
                session.clear()
                session.permanent = True
                session["user"] = acct.username
                session["token"] = acct.token
                return redirect(_safe_next(request.args.get("next")) or url_for("scans"), 303)
            error = "Wrong username or password, or the account is disabled."
        return render_template("signin.html", error=error), 401 if error else 200

    @app.post("/signout")
    def signout():
        users.record_signout(db, g.user.username)
        session.clear()
        return redirect(url_for("signin"), 303)

    # --- pages --------------------------------------------------------------------------------------

    @app.get("/")
    def scans():
        rows = []
        with db.session() as s:
            for scan in s.scalars(select(Scan).order_by(Scan.id.desc())):
                counts = dict(s.execute(select(Photo.verdict, func.count()).where(Photo.scan_id == scan.id)
                                        .group_by(Photo.verdict)).all())
                pending = s.scalar(select(func.count()).select_from(Photo).where(
                    Photo.scan_id == scan.id, Photo.signoff_state == "pending")) or 0
                rows.append({"scan": scan, "counts": counts, "pending": pending,
                             "total": sum(counts.values()), "own": same_person(scan.owner, g.user.username)})
        return render_template("scans.html", rows=rows, verdicts=[v.value for v in VERDICT_ORDER])

    def _scan_view(scan_id: int) -> dict:
        """Photos of one scan for a channel and a state, in burst groups, worst first (review.scan_view)."""
        channel = request.args.get("channel", "")
        if channel and channel not in school_channels():
            abort(404, f"unknown channel {channel!r}")
        state = request.args.get("state", "pending")
        if state not in STATES + ("all",):
            abort(404, f"unknown state {state!r}")
        try:
            view = scan_view(db, scan_id, channel=channel or None, state=state)
        except SignoffError:
            abort(404, f"no scan with id {scan_id}")
        return dict(view=view, summary=view.summary, blocks=view.blocks, channel=channel, state=state,
                    count=view.count, channels=school_channels(), states=STATES,
                    own=same_person(view.summary.owner, g.user.username))

    @app.get("/scans/<int:scan_id>")
    def queue(scan_id: int):
        view = _scan_view(scan_id)
        for members in view["blocks"]:
            for it in members:
                it.faces_text = _faces_text(it.photo.faces)
        return render_template("queue.html", **view)

    @app.get("/scans/<int:scan_id>/sheet")
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
                it.boxes = Markup("".join(_box(f, p.width, p.height) for f in shown)) \
                    if p.width and p.height else Markup("")
                it.faces_text = _faces_text(p.faces)
                # What the rules allow now (the file's hash is checked when deciding, not for every card).
                it.options = decision_options(db, p.photo_id, reviewer=g.user.username, check_file=False)
                it.evidence = face_evidence(db, p.photo_id) if p.faces else []
                it.selectable = it.verdict == "clear" and "approve" in it.options.decisions
            _group_actions(members)
        items = [it for members in view["blocks"] for it in members]
        for i, it in enumerate(items):  # after a decision, the page comes back at the next photo
            it.next_id = items[min(i + 1, len(items) - 1)].photo.photo_id
        return render_template("sheet.html", any_selectable=any(it.selectable for it in items), **view)

    def _photo_or_404(photo_id: int) -> tuple[Photo, Scan]:
        with db.session() as s:
            photo = s.get(Photo, photo_id)
            if photo is None:
                abort(404, f"no photo with id {photo_id}")
            return photo, s.get(Scan, photo.scan_id)

    @app.get("/photos/<int:photo_id>")
    def photo(photo_id: int):
        p, scan = _photo_or_404(photo_id)
        with db.session() as s:
            faces = [FaceResult(box=(f.top, f.right, f.bottom, f.left), status=FaceStatus(f.status),
                                detector_score=f.detector_score, student_id=f.student_id,
                                candidate_id=f.candidate_id, distance=f.distance, reason=f.reason, time_s=f.time_s)
                     for f in s.get(Photo, photo_id).faces]
            red = s.scalar(select(Redaction).where(Redaction.photo_id == photo_id,
                                                   Redaction.source_sha256 == p.sha256)
                           .order_by(Redaction.id.desc()).limit(1)) if p.sha256 else None
        so = current_signoff(db, photo_id)
        options = decision_options(db, photo_id, reviewer=g.user.username)
        boxes = Markup("".join(_box(f, p.width, p.height) for f in faces)) if p.width and p.height else Markup("")
        frames = [{"t": t, "boxes": Markup("".join(_box(f, p.width, p.height) for f in faces if f.time_s == t))
                   if p.width and p.height else Markup("")}
                  for t in clip_frame_times(faces)] if p.kind == "video" else []
        rules = set(options.rules.values())
        # Rules with a banner of their own on the page are not repeated in the "not offered" list.
        not_offered = {d: decide.refusal(options.rules[d], photo_id, options.refused[d])
                       for d in ("approve", "reject") if d in options.refused and options.rules[d] not in BANNERS}
        return render_template(
            "photo.html", p=p, scan=scan, verdicts=channel_verdicts(p, scan), faces_text=_faces_text(faces),
            boxes=boxes, frames=frames, so=so, redaction=red, reasons=_reasons(p), options=options, not_offered=not_offered,
            changed="changed" in rules, strict="strict" in rules,
            evidence=face_evidence(db, photo_id), own=same_person(scan.owner, g.user.username), styles=STYLES,
            fit=_fit(p.width, p.height), next=_safe_next(request.args.get("next")))

    @app.post("/photos/<int:photo_id>/sign")
    def sign_photo(photo_id: int):
        _photo_or_404(photo_id)
        decision = request.form.get("decision", "")
        channel = request.form.get("channel") or None
        try:
            version = int(request.form.get("version", ""))
        except ValueError:
            abort(400)
        try:
            (result,) = sign(db, [photo_id], reviewer=g.user.username, decision=decision, channel=channel,
                             note=request.form.get("note", "")[:2000], expected_version=version)
        except SignoffError as exc:
            flash("Refused: " + decide.refusal(exc.rule, photo_id, str(exc)), "refused")
        else:
            flash(("Signed: " + result.message) if result.ok else
                  ("Refused: " + decide.refusal(result.rule, photo_id, result.message)),
                  "ok" if result.ok else "refused")
        return redirect(_safe_next(request.form.get("next")) or url_for("photo", photo_id=photo_id), 303)

    @app.get("/photos/<int:photo_id>/redact")
    def redact_page(photo_id: int):
        p, scan = _photo_or_404(photo_id)
        style = request.args.get("style", "fill")
        if style not in STYLES:
            abort(404, f"unknown style {style!r}")
        try:
            redact_preview(db, photo_id, style)
            error = None
        except RedactError as exc:
            error = str(exc)
        return render_template("redact.html", p=p, scan=scan, style=style, styles=STYLES, error=error,
                               fit=_fit(p.width, p.height), next=_safe_next(request.args.get("next")),
                               own=same_person(scan.owner, g.user.username))

    @app.post("/photos/<int:photo_id>/redact")
    def redact_confirm(photo_id: int):
        _photo_or_404(photo_id)
        style = request.form.get("style", "fill")
        nxt = _safe_next(request.form.get("next"))  # the contact sheet the reviewer came from, if any
        try:
            version = int(request.form.get("version", ""))
        except ValueError:
            abort(400)
        try:
            with engine_lock:
                (res,) = run_redact(db, [photo_id], redact_dir, actor=g.user.username, style=style,
                                    engine=face_engine())
        except RedactError as exc:
            flash(f"Redaction refused: {exc}", "refused")
            return redirect(url_for("redact_page", photo_id=photo_id, style=style if style in STYLES else "fill",
                                    next=nxt), 303)
        if not res.ok:
            flash(f"Redaction refused: {res.message}", "refused")
            return redirect(url_for("redact_page", photo_id=photo_id, style=style, next=nxt), 303)
        flash(f"Redacted copy verified: {res.message}.", "ok")
        (result,) = sign(db, [photo_id], reviewer=g.user.username, decision="redact",
                         note=request.form.get("note", "")[:2000], expected_version=version)
        flash(("Signed: " if result.ok else "Refused: ") + result.message, "ok" if result.ok else "refused")
        return redirect(url_for("photo", photo_id=photo_id, next=nxt), 303)

    @app.get("/photos/<int:photo_id>/image.jpg")
    def image(photo_id: int):
        p, _ = _photo_or_404(photo_id)
        px = SIZES.get(request.args.get("size", "thumb"))
        if px is None:
            abort(404)
        if p.kind == "video":  # a clip's picture: its first flagged frame (the boxes shown are its faces)
            with db.session() as s:
                faces = [FaceResult(box=(0, 0, 0, 0), status=FaceStatus(f.status), time_s=f.time_s)
                         for f in s.get(Photo, photo_id).faces]
            return _clip_frame(p.path, clip_frame_times(faces, 1)[0], px)
        try:
            return _jpeg(jpeg_thumbnail(p.path, px, quality=85)[0])
        except Exception:  # gone, unreadable: the page says so in words
            abort(404, "the photo file cannot be read")

    @app.get("/photos/<int:photo_id>/frame.jpg")
    def clip_frame(photo_id: int):
        p, _ = _photo_or_404(photo_id)
        px = SIZES.get(request.args.get("size", "page"))
        try:
            t = float(request.args.get("t", "0"))
        except ValueError:
            t = -1.0
        if p.kind != "video" or px is None or not 0 <= t <= (p.duration_s or 0) + 1:
            abort(404, "no such frame")
        return _clip_frame(p.path, t, px)

    @app.get("/photos/<int:photo_id>/preview.jpg")
    def preview_image(photo_id: int):
        _photo_or_404(photo_id)
        style = request.args.get("style", "fill")
        try:
            rgb = redact_preview(db, photo_id, style)
        except RedactError as exc:
            abort(404, str(exc))
        im = Image.fromarray(rgb)
        im.thumbnail((SIZES["page"], SIZES["page"]))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        return _jpeg(buf.getvalue())

    app.register_blueprint(decide.bp)

    @app.get("/audit")
    def audit_log():
        action = request.args.get("action") or None
        try:
            last = max(1, min(int(request.args.get("last", "200")), 5000))
        except ValueError:
            last = 200
        events = list(reversed(audit.log(db, action=action, limit=last)))
        return render_template("audit.html", events=events, action=action or "", last=last,
                               verification=audit.verify(db))

    return app


def _clip_frame(path: str, t: float, px: int):
    """The clip's frame at `t` seconds as a JPEG response, read from the clip now."""
    from photocheck.video import frame_at

    try:
        rgb = frame_at(path, t, max_side=px)
    except Exception:  # gone, unreadable: the page says so in words
        abort(404, "the clip file cannot be read")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=85)
    return _jpeg(buf.getvalue())


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


def _host_name(header: str) -> str:
    """The host of a Host header, without port or IPv6 brackets ("[::1]:8765" -> "::1")."""
    header = header.strip().casefold()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.partition(":")[0]


def _reasons(p: Photo) -> list[str]:
    return [r for r in json.loads(p.reasons or "[]") if r != p.error]  # the error is shown once, explained
