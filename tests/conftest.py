"""Fixtures: a fresh database per test, a CLI runner bound to it, a writable demo copy.

photocheck's data directory (and so its encryption key file) is a temporary folder for the
whole session and a fresh one for each test: no test ever touches the real ~/.local/share.
The suite runs with network sockets disabled (pytest-socket, see pyproject.toml).

Backends: `db_url` is a new SQLite file by default. A test (or module, via `pytestmark`) marked
`@pytest.mark.backends("sqlite", "postgresql")` runs once per backend; its PostgreSQL run gets a
new database on the server at $PHOTOCHECK_TEST_PG (dropped afterwards), and is skipped when that
is unset, unless $PHOTOCHECK_REQUIRE_PG=1 (as in .ci/run), when it fails. Start a server with
`eval "$(.ci/postgres start)"` (CONTRIBUTING.md, "Run the tests"). Use a unix-socket URL
(`?host=/socket/dir`): the suite allows no TCP.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

# Module- and session-scoped fixtures (e2e event sets) use this one; each test gets its own below.
os.environ["PHOTOCHECK_HOME"] = tempfile.mkdtemp(prefix="photocheck-home-")
for _var in ("PHOTOCHECK_KEY", "PHOTOCHECK_KEY_FILE", "PHOTOCHECK_RETENTION", "XDG_DATA_HOME"):
    os.environ.pop(_var, None)


@pytest.fixture(autouse=True)
def _photocheck_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("PHOTOCHECK_HOME", str(home))
    return home

from tests.helpers import REPO, Cli, pg_url


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args or ("sqlite", "postgresql"))


@pytest.fixture
def backend() -> str:
    """The database backend of this test: "sqlite" unless parametrised by @pytest.mark.backends."""
    return "sqlite"


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
