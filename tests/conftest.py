"""Fixtures: a fresh database per test, a CLI runner bound to it, a writable demo copy.

photocheck's data directory (and so its encryption key file) is a temporary folder for the
whole session and a fresh one for each test: no test ever touches the real ~/.local/share.
The suite runs with network sockets disabled (pytest-socket, see pyproject.toml).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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

from tests.helpers import REPO, Cli


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'photocheck.db'}"


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
