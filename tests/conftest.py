"""Fixtures: a fresh database per test, a CLI runner bound to it, a writable demo copy.

photocheck's data directory (and so its encryption key file) is a temporary folder for the
whole session and a fresh one for each test: no test ever touches the real ~/.local/share.
The suite runs with network sockets disabled (pytest-socket, see pyproject.toml).

Backends: `db_url` is a new SQLite file by default. A test (or module, via `pytestmark`) marked
`@pytest.mark.backends("sqlite", "postgresql")` runs once per backend; its PostgreSQL run gets a
new database on the server at $PHOTOCHECK_TEST_PG (dropped afterwards), and is skipped when that
is unset, unless $PHOTOCHECK_REQUIRE_PG=1 (as in .ci/run), when it fails. Start a server with
`eval "$(.ci/postgres start)"` (README.md, "Developing"). Use a unix-socket URL
(`?host=/socket/dir`): the suite allows no TCP.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy.pool import NullPool

# Module- and session-scoped fixtures (e2e event sets) use this one; each test gets its own below.
os.environ["PHOTOCHECK_HOME"] = tempfile.mkdtemp(prefix="photocheck-home-")
for _var in ("PHOTOCHECK_KEY", "PHOTOCHECK_KEY_FILE", "PHOTOCHECK_RETENTION", "XDG_DATA_HOME"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def _photocheck_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PHOTOCHECK_HOME", str(home))
    return home

from tests.helpers import REPO, Cli


PG_ENV = "PHOTOCHECK_TEST_PG"
REQUIRE_PG_ENV = "PHOTOCHECK_REQUIRE_PG"


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args or ("sqlite", "postgresql"))


@pytest.fixture
def backend() -> str:
    """The database backend of this test: "sqlite" unless parametrised by @pytest.mark.backends."""
    return "sqlite"


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
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server for one test; dropped afterwards even
    if connections to it are still open."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin_url = make_url(pg_admin_url())
    name = f"photocheck_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "postgresql":
        with pg_url() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'photocheck.db'}"


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped demo (roster + sample_images)."""
    dest = tmp_path / "demo"
    shutil.copytree(REPO / "roster", dest / "roster")
    shutil.copytree(REPO / "sample_images", dest / "sample_images")
    return dest
