#!/usr/bin/env python3
"""Start-up time of the `photocheck` command (a benchmark, not a test).

Measures, each --runs times after one unmeasured warm-up run:
  * `photocheck --help` and `photocheck scan --help`,
  * `photocheck scan` of an unchanged folder of 12 photos (sample_images/ copied 3 times with a few
    distinct trailing bytes, so each file has its own sha256), scanned once first into a fresh
    database: every photo then comes from the scan cache, so this is the command's fixed cost.
Prints the minimum and median wall time and CPU time (user + system) of each, and a Markdown table.
On a busy machine wall time mostly measures the wait for a core: the minimum CPU time is then the
steadier figure (on an idle machine the two are nearly equal: the command runs on one thread). Every command runs as a subprocess without PYTHONDONTWRITEBYTECODE (an installed
copy has its .pyc files; with it, each start compiles every module from source).

Usage (from the repo root):
  .venv/bin/python bench/startup.py
  .venv/bin/python bench/startup.py --runs 20 --source /tmp/other-checkout   # run another tree instead
  .venv/bin/python bench/startup.py --runs 15 --against /tmp/previous-commit   # A/B: both trees, run by run
With --against, each run of a command is followed by the same run from the other tree, so a
shared machine's changing load weighs on both alike.
The 60-photo first scan vs unchanged rescan ratio is bench/speed.py's (`--scale --no-cli`).
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of the child, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if hasattr(os, "wait4"):
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        return wall, ru.ru_utime + ru.ru_stime, p.returncode
    p.wait()
    return time.perf_counter() - t0, float("nan"), p.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--source", type=Path, default=None,
                    help="run photocheck from this source tree (PYTHONPATH) instead of the installed one")
    ap.add_argument("--against", type=Path, default=None,
                    help="also run every measured command from this source tree, alternating run by run")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="photocheck-startup-"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PHOTOCHECK_HOME=str(work / "home"), PHOTOCHECK_DB=f"sqlite:///{work / 'pc.db'}",
                   PHOTOCHECK_USER="bench")
        if args.source:
            env["PYTHONPATH"] = str(args.source.resolve())
        pc = [sys.executable, "-c", "from photocheck.cli import main; main()"]
        trees = {"": env}
        if args.against:
            trees = {"this: ": env, f"{args.against}: ": {**env, "PYTHONPATH": str(args.against.resolve())}}
        photos = work / "photos"
        photos.mkdir()
        for i in range(3):
            for f in sorted((REPO / "sample_images").glob("*.jpg")):
                (photos / f"{f.stem}_{i}.jpg").write_bytes(f.read_bytes() + f"photocheck-startup-{i}".encode())
        for step in (["roster", "import", str(REPO / "roster" / "no_consent.csv")],
                     ["enroll", str(REPO / "roster" / "photos")], ["scan", str(photos)]):
            if timed(pc + step, env, work)[2] not in (0, 1):
                raise SystemExit(f"photocheck {' '.join(step)} failed")
        commands = {"photocheck --help": ["--help"], "photocheck scan --help": ["scan", "--help"],
                    f"photocheck scan (unchanged rescan, {len(list(photos.iterdir()))} photos)": ["scan", str(photos)]}
        rows = []
        for label, cmd in commands.items():
            for tree_env in trees.values():
                timed(pc + cmd, tree_env, work)  # warm-up: writes .pyc, fills the page cache
            walls: dict[str, list[float]] = {t: [] for t in trees}
            cpus: dict[str, list[float]] = {t: [] for t in trees}
            for _ in range(args.runs):
                for tree, tree_env in trees.items():
                    wall, cpu, rc = timed(pc + cmd, tree_env, work)
                    if rc not in (0, 1):
                        raise SystemExit(f"{tree}{label} exited {rc}")
                    walls[tree].append(wall)
                    cpus[tree].append(cpu)
            for tree in trees:
                w, c = walls[tree], cpus[tree]
                rows.append((f"`{label}`" + (f" ({tree[:-2]})" if tree else ""), min(w), statistics.median(w), min(c),
                             statistics.median(c)))
                print(f"{tree}{label}: min {min(w):.3f} s, median {statistics.median(w):.3f} s wall, "
                      f"CPU min {min(c):.3f} s, median {statistics.median(c):.3f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{datetime.date.today().isoformat()}, {describe()}; {args.runs} runs each; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else '?'}\n")
    print("| command | wall min | wall median | CPU (user+sys) min | CPU median |")
    print("|---|---|---|---|---|")
    for label, lo, med, cpu_lo, cpu in rows:
        print(f"| {label} | {lo:.2f} s | {med:.2f} s | {cpu_lo:.2f} s | {cpu:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
