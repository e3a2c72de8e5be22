"""What the web review's route modules share: the database, the face engine, safe redirects."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app

from photocheck.review import PhotoNotFound, photo_and_scan


def db():
    return current_app.extensions["photocheck_db"]


def face_engine():
    """The app's FaceEngine, loaded on first use; hold `engine_lock()` while using it."""
    holder = current_app.extensions["photocheck_engine"]
    if holder[0] is None:
        from photocheck.engine import FaceEngine

        holder[0] = FaceEngine()
    return holder[0]


def engine_lock():
    return current_app.extensions["photocheck_engine_lock"]  # FaceEngine is not thread-safe


def safe_next(target: str | None) -> str | None:
    """Only a path on this site (no scheme, no host, no //): never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def fit(width: int | None, height: int | None) -> str:
    """Inline style sizing a big picture box: full width, but at most 80% of the window's height."""
    if not width or not height:
        return "width:100%"
    return f"width:min(100%, calc(80vh * {width / height:.4f}))"


def jpeg(data: bytes):
    return data, 200, {"Content-Type": "image/jpeg"}


def photo_or_404(photo_id: int):
    """(photo row, scan row), or a 404 page."""
    try:
        return photo_and_scan(db(), photo_id)
    except PhotoNotFound as exc:
        abort(404, str(exc))
