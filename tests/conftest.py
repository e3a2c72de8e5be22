"""Fixtures: a fresh database per test, a CLI runner bound to it, a writable demo copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
