"""Test helpers: paths to the real ../shared data (skipped when absent), a CLI runner bound to
one database, and wrappers around ../shared/tools (event sets and their scoring)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from photocheck.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FACES = SHARED / "faces"


def load_face(rel: str) -> np.ndarray:
    """../shared/faces/<rel> as an upright RGB array."""
    with Image.open(FACES / rel) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
TOOLS = SHARED / "tools"


def need_shared() -> Path:
    if not (FACES / "people").is_dir() or not (TOOLS / "make_event_set.py").is_file():
        pytest.skip("../shared (real face photos and tools) is not present")
    return SHARED


PG_ENV = "PHOTOCHECK_TEST_PG"
REQUIRE_PG_ENV = "PHOTOCHECK_REQUIRE_PG"


def pg_admin_url() -> str:
    """$PHOTOCHECK_TEST_PG, or skip (fail with $PHOTOCHECK_REQUIRE_PG=1) when it is not set."""
    url = os.environ.get(PG_ENV)
    if not url:
        why = (f"PostgreSQL tests need ${PG_ENV} (a postgresql+psycopg:// URL of a role that may create "
               f"databases; `eval \"$(.ci/postgres start)\"` sets it)")
        if os.environ.get(REQUIRE_PG_ENV) == "1":
            pytest.fail(f"${REQUIRE_PG_ENV}=1 but {why}")
        pytest.skip(why)
    return url


@contextmanager
def pg_url(template: str | None = None) -> Iterator[str]:
    """The URL of a new PostgreSQL database on the test server, for one test or fixture; dropped
    afterwards even if connections to it are still open. `template`: the URL of a database to
    copy (connections still open to it, e.g. pooled by an in-process CLI run, are closed first)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    admin_url = make_url(pg_admin_url())
    name = f"photocheck_test_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            if template:
                # Our own connections only: an autovacuum worker on the template runs as a
                # superuser (terminating it fails); it is gone within the retries below.
                conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = %(db)s AND pid <> pg_backend_pid() "
                                     "AND usename = current_user",
                                     {"db": make_url(template).database})
            for attempt in range(300):  # a terminated backend (or autovacuum) takes a moment to go
                try:
                    conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
                    break
                except OperationalError as exc:
                    if "being accessed by other users" not in str(exc) or attempt == 299:
                        raise
                    time.sleep(0.1)
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


class Cli:
    """Runs `photocheck ...` in-process against one database, as a user would type it."""

    def __init__(self, db_url: str, user: str = "tester"):
        self.db_url = db_url
        self.user = user
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0):
        result = self.runner.invoke(app, [str(a) for a in args], env={"PHOTOCHECK_DB": self.db_url,
                                                                      "PHOTOCHECK_USER": self.user,
                                                                      "COLUMNS": "200"})
        if expect is not None and result.exit_code != expect:
            raise AssertionError(f"photocheck {' '.join(map(str, args))} exited {result.exit_code}, "
                                 f"expected {expect}:\n{result.output}\n{result.exception!r}")
        return result


def make_event_set(out: Path, *, photos: int, seed: int, face_px: str | None = None,
                   max_people: int | None = None, degrade: str | None = None) -> Path:
    """Compose an event set with ../shared/tools/make_event_set.py (real faces). `degrade`: its
    --degrade conditions (e.g. "motion:9,dark"), one a photo in turn."""
    need_shared()
    cmd = [sys.executable, str(TOOLS / "make_event_set.py"), "--people", str(FACES / "people"),
           "--backdrops", str(FACES / "nofaces"), "--out", str(out), "--photos", str(photos), "--seed", str(seed)]
    if face_px:
        cmd += ["--face-px", face_px]
    if max_people:
        cmd += ["--max-people", str(max_people)]
    if degrade:
        cmd += ["--degrade", degrade]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def score(truth: Path, report: Path) -> dict[str, str]:
    """Run ../shared/tools/score_scan.py and parse its last line into a dict."""
    proc = subprocess.run([sys.executable, str(TOOLS / "score_scan.py"), "--truth", str(truth),
                           "--report", str(report)], capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1]
    figures = dict(part.split("=", 1) for part in last.split())
    figures["_output"] = proc.stdout
    return figures


def load_report(path: Path) -> dict:
    return json.loads(path.read_text())


def scan_demo(demo: Path, db_url: str, *, owner: str = "alice") -> None:
    """The shipped demo (a `demo_copy`) imported, enrolled and scanned by `owner` with the real engine.

    The encryption key is wherever $PHOTOCHECK_KEY_FILE / $PHOTOCHECK_HOME point.
    """
    cli = Cli(db_url, user=owner)
    cli("roster", "import", demo / "roster" / "no_consent.csv")
    cli("enroll", demo / "roster" / "photos")
    cli("scan", demo / "sample_images", "--jobs", "1", expect=1)  # a listed student is found


def scan_event_set(root: Path, **set_options) -> tuple[Path, Path, dict[str, str]]:
    """Make an event set under `root` (make_event_set options), import its roster, enroll its
    references, scan its photos with the CLI as a user would: (events, JSON report, score)."""
    events = make_event_set(root / "events", **set_options)
    cli = Cli(f"sqlite:///{root / 'photocheck.db'}")
    cli("roster", "import", events / "roster" / "no_consent.csv")
    cli("enroll", events / "roster" / "photos")
    report = root / "report.json"
    cli("scan", events / "photos", "--json", report, expect=None)
    return events, report, score(events / "truth.json", report)
