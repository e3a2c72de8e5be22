"""The `photocheck` command starts light: a command imports what it needs when it runs, so `--help`
and small commands do not pay for SQLAlchemy, numpy, onnxruntime or Pillow."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

HEAVY = ("numpy", "sqlalchemy", "alembic", "onnxruntime", "PIL", "cryptography", "argon2", "flask", "dlib",
         "photocheck.db", "photocheck.engine")

_PROBE = """
import json, sys
sys.argv = ["photocheck", *json.loads(sys.argv[1])]
try:
    from photocheck.cli import main
    main()
except SystemExit:
    pass
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {h.split(".")[0] for h in HEAVY}
                                and any(m == h or m.startswith(h + ".") for h in HEAVY))))
"""


def loaded_heavy(*args: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after `photocheck ARGS`."""
    env = {**os.environ, "COLUMNS": "120"}
    r = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + _PROBE, json.dumps(args)], cwd=REPO,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["scan", "--help"], ["roster", "--help"],
                                  ["review", "sign", "--help"], ["redact", "--help"], ["user", "--help"],
                                  ["serve", "--help"], ["keys", "--help"]])
def test_help_imports_no_heavy_module(args):
    assert loaded_heavy(*args) == []


def test_the_heavy_modules_are_what_a_scan_needs():
    """The probe can see them: a real command run does load the database layer."""
    assert "sqlalchemy" in loaded_heavy("roster", "list", "--db", "sqlite://")
