"""Test helpers: paths to the real ../shared data (skipped when absent), a CLI runner bound to
one database, and wrappers around ../shared/tools (event sets and their scoring)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from photocheck.cli import app

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FACES = SHARED / "faces"
TOOLS = SHARED / "tools"


def need_shared() -> Path:
    if not (FACES / "people").is_dir() or not (TOOLS / "make_event_set.py").is_file():
        pytest.skip("../shared (real face photos and tools) is not present")
    return SHARED


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


def make_event_set(out: Path, *, photos: int, seed: int, face_px: str | None = None) -> Path:
    """Compose an event set with ../shared/tools/make_event_set.py (real faces)."""
    need_shared()
    cmd = [sys.executable, str(TOOLS / "make_event_set.py"), "--people", str(FACES / "people"),
           "--backdrops", str(FACES / "nofaces"), "--out", str(out), "--photos", str(photos), "--seed", str(seed)]
    if face_px:
        cmd += ["--face-px", face_px]
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
