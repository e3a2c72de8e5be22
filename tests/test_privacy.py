"""Privacy by construction: no process photocheck starts may run onnxruntime's telemetry."""
from __future__ import annotations

import subprocess
import sys


def test_onnxruntime_telemetry_is_switched_off_before_onnxruntime_loads():
    # A fresh interpreter: importing any photocheck module sets the opt-out before onnxruntime is
    # imported (the engine imports it lazily), and the scan's worker processes inherit it.
    code = ("import sys, os; import photocheck.engine; assert 'onnxruntime' not in sys.modules; "
            "print(os.environ.get('ORT_TELEMETRY_DISABLED'), os.environ.get('ORT_DISABLE_TELEMETRY'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == ["1", "1"]
