"""Reviewer accounts for the web review (`photocheck serve`).

Passwords are hashed with Argon2id (argon2-cffi, its default parameters); only the hash is
stored. Usernames are case-insensitive (stored casefolded), because the "second person" rule
compares the signed-in username with a scan's owner case-insensitively: the account of the
person who runs scans must have the same name as their PHOTOCHECK_USER (or OS user).

Every change to an account and every sign-in (and failed sign-in) is an audit event. A failed
sign-in with an unknown username records "(unknown)", never the text typed (it may be a password).
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from photocheck import audit
from photocheck.db import Database
from photocheck.db.models import User

MIN_PASSWORD = 10
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that both cases take the same time.
    Made on first use: hashing costs ~0.1 s, which every command would pay at import."""
    return _hasher.hash("photocheck: no such user")


def _account_name(username: str) -> str:
    """Account names are stored casefolded and compared that way (see review.same_person)."""
    return username.strip().casefold()


class UserError(Exception):
    """An account operation refused; the message says why."""


@dataclass
class Account:
    username: str
    display_name: str
    created_at: datetime
    disabled: bool
    # Changes with the password: a web session remembers it, so a new password ends old sessions.
    token: str


def normalise(username: str) -> str:
    name = _account_name(username)
    if not USERNAME_RE.match(name):
        raise UserError(f"{username!r} is not a valid username: 1-64 characters, letters, digits and . _ @ - "
                        "(starting with a letter or digit)")
    return name


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
    if password != password.strip():
        raise UserError("password must not start or end with spaces")


def _account(u: User) -> Account:
    return Account(u.username, u.display_name, u.created_at, u.disabled,
                   hashlib.sha256(u.password_hash.encode()).hexdigest()[:32])


def add_user(db: Database, username: str, password: str, *, display_name: str = "", actor: str) -> Account:
    name = normalise(username)
    check_password(password)
    with db.session(immediate=True) as s:
        if s.scalar(select(User).where(User.username == name)) is not None:
            raise UserError(f"user {name} already exists (use `photocheck user passwd {name}` to change "
                            "the password)")
        u = User(username=name, display_name=display_name.strip(), password_hash=_hasher.hash(password))
        s.add(u)
        s.flush()
        audit.record(s, actor=actor, action="user.add", username=name)
        return _account(u)


def list_users(db: Database) -> list[Account]:
    with db.session() as s:
        return [_account(u) for u in s.scalars(select(User).order_by(User.username))]


def get_user(db: Database, username: str) -> Account | None:
    with db.session() as s:
        u = s.scalar(select(User).where(User.username == _account_name(username)))
        return _account(u) if u else None


def _require(s, username: str) -> User:
    name = _account_name(username)
    u = s.scalar(select(User).where(User.username == name))
    if u is None:
        raise UserError(f"no user {name!r} (see `photocheck user list`)")
    return u


def set_disabled(db: Database, username: str, disabled: bool, *, actor: str) -> Account:
    with db.session(immediate=True) as s:
        u = _require(s, username)
        u.disabled = disabled
        audit.record(s, actor=actor, action="user.disable" if disabled else "user.enable", username=u.username)
        return _account(u)


def set_password(db: Database, username: str, password: str, *, actor: str) -> Account:
    check_password(password)
    with db.session(immediate=True) as s:
        u = _require(s, username)
        u.password_hash = _hasher.hash(password)
        audit.record(s, actor=actor, action="user.passwd", username=u.username)
        return _account(u)


def authenticate(db: Database, username: str, password: str, *, via: str = "web") -> Account | None:
    """The account if the password is right and the account enabled, else None; audited either way."""
    name = _account_name(username)
    with db.session(immediate=True) as s:
        u = s.scalar(select(User).where(User.username == name)) if USERNAME_RE.match(name) else None
        ok = False
        try:
            ok = _hasher.verify(u.password_hash if u else _dummy_hash(), password) and u is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if ok and u.disabled:
            audit.record(s, actor=u.username, action=f"{via}.signin.failed", reason="account disabled")
            return None
        if not ok:
            audit.record(s, actor=u.username if u else "(unknown)", action=f"{via}.signin.failed",
                         reason="wrong password" if u else "unknown user")
            return None
        if _hasher.check_needs_rehash(u.password_hash):
            u.password_hash = _hasher.hash(password)
        audit.record(s, actor=u.username, action=f"{via}.signin")
        return _account(u)


def record_signout(db: Database, username: str, *, via: str = "web") -> None:
    with db.session(immediate=True) as s:
        audit.record(s, actor=username, action=f"{via}.signout")
