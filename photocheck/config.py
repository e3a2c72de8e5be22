"""Settings from flags and the environment, in one place.

Precedence: command-line flag, then environment variable, then default.
"""
from __future__ import annotations

import getpass
import os
from pathlib import Path

DB_ENV = "PHOTOCHECK_DB"
USER_ENV = "PHOTOCHECK_USER"
HOME_ENV = "PHOTOCHECK_HOME"
CHANNELS_ENV = "PHOTOCHECK_CHANNELS"

# The school's own publication channels. Publishing is for these purposes only: anything else
# (a parent's personal use, an advertiser...) is not a channel and is refused.
SCHOOL_CHANNELS: tuple[str, ...] = ("web", "social", "yearbook", "newsletter", "press")

KEY_ENV = "PHOTOCHECK_KEY"            # the encryption key itself (base64), instead of a key file
KEY_FILE_ENV = "PHOTOCHECK_KEY_FILE"  # where the key file lives (default: data_dir()/photocheck.key)
RETENTION_ENV = "PHOTOCHECK_RETENTION"

# How long scan results and reference encodings are kept before `photocheck purge` deletes them.
# One school year: reference photos are re-taken each picture day, and a year is within the
# strictest of the laws that apply (GDPR art. 5(1)(e) "no longer than necessary"; Texas CUBI: at
# most one year after the purpose expires; Illinois BIPA: at most three years).
DEFAULT_RETENTION = "365d"


def data_dir() -> Path:
    """Where photocheck keeps its database by default.

    $PHOTOCHECK_HOME, else $XDG_DATA_HOME/photocheck, else ~/.local/share/photocheck.
    """
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "photocheck"


def default_db_url() -> str:
    return f"sqlite:///{data_dir() / 'photocheck.db'}"


def key_file() -> Path:
    """Where the encryption key of reference encodings lives: $PHOTOCHECK_KEY_FILE, else the data dir."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]).expanduser()
    return data_dir() / "photocheck.key"


def retention(flag: str | None = None) -> str:
    """The retention period: --older-than, then $PHOTOCHECK_RETENTION, then DEFAULT_RETENTION."""
    return flag or os.environ.get(RETENTION_ENV) or DEFAULT_RETENTION


def resolve_db_url(flag: str | None = None) -> str:
    """The SQLAlchemy URL to use: --db, then $PHOTOCHECK_DB, then the default SQLite file."""
    return flag or os.environ.get(DB_ENV) or default_db_url()


def current_user(flag: str | None = None) -> str:
    """Who is acting: --as, then $PHOTOCHECK_USER, then the OS user."""
    if flag:
        return flag
    if os.environ.get(USER_ENV):
        return os.environ[USER_ENV]
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still record something honest
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class ConfigError(ValueError):
    """A setting that cannot be used as given."""


def school_channels() -> tuple[str, ...]:
    """The channels this school publishes on: $PHOTOCHECK_CHANNELS (e.g. "web,yearbook"), else all five."""
    raw = os.environ.get(CHANNELS_ENV, "").strip()
    if not raw:
        return SCHOOL_CHANNELS
    wanted = [c.strip().casefold() for c in raw.replace(";", ",").split(",") if c.strip()]
    unknown = [c for c in wanted if c not in SCHOOL_CHANNELS]
    if unknown:
        raise ConfigError(f"${CHANNELS_ENV}: unknown channel(s) {', '.join(unknown)} "
                          f"(choose from {', '.join(SCHOOL_CHANNELS)})")
    return tuple(c for c in SCHOOL_CHANNELS if c in wanted)


def check_channel(channel: str) -> str:
    """`channel` normalised, or ConfigError saying why publishing for it is not allowed."""
    ch = channel.strip().casefold()
    allowed = school_channels()
    if ch not in allowed:
        raise ConfigError(f"{channel!r} is not one of the school's publication channels ({', '.join(allowed)}): "
                          "photocheck only clears photos for the school's own publications, not for personal, "
                          "promotional or other non-school use")
    return ch
