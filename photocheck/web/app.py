"""The Flask application behind `photocheck serve`.

Security model (see docs/administration.md, "Reviewer accounts and the web server"): every page but sign-in needs a session; the session
cookie is signed with a secret kept 0600 in the data directory, HttpOnly and SameSite=Lax;
every POST carries a CSRF token (Flask-WTF); the signed-in username is the reviewer the library
checks ("not your own scan"); pages show student ids like the reports, never names or encodings.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from datetime import timedelta
from pathlib import Path

from flask import Flask, abort, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from photocheck import audit, datadir, users
from photocheck.config import data_dir, resolve_db_url
from photocheck.db import open_database
from photocheck.reports.html_report import explain_error
from photocheck.web import decide, photos, scans
from photocheck.web.common import safe_next

SECRET_FILE = "web-secret.key"
SESSION_HOURS = 8
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
    app.extensions["photocheck_redact_dir"] = Path(redact_dir) if redact_dir else data_dir() / "redacted"
    app.extensions["photocheck_engine"] = [engine]  # loaded on first use (photocheck.web.common.face_engine)
    app.extensions["photocheck_engine_lock"] = threading.Lock()  # waitress serves with threads

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
                return redirect(safe_next(request.args.get("next")) or url_for("scans.index"), 303)
            error = "Wrong username or password, or the account is disabled."
        return render_template("signin.html", error=error), 401 if error else 200

    @app.post("/signout")
    def signout():
        users.record_signout(db, g.user.username)
        session.clear()
        return redirect(url_for("signin"), 303)

    # --- pages --------------------------------------------------------------------------------------

    app.register_blueprint(scans.bp)
    app.register_blueprint(photos.bp)
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


def _host_name(header: str) -> str:
    """The host of a Host header, without port or IPv6 brackets ("[::1]:8765" -> "::1")."""
    header = header.strip().casefold()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.partition(":")[0]

