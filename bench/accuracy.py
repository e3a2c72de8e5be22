#!/usr/bin/env python3
"""Accuracy and speed of photocheck vs the face_recognition CLI on composed event sets.

For each set it runs ../shared/tools/make_event_set.py, then
  photocheck: roster import, enroll, scan --json   (fresh database)
  face_recognition CLI: `face_recognition --cpus N KNOWN PHOTOS` with one <student_id>.jpg per
                        listed student (the way a school would script it)
and scores both with ../shared/tools/score_scan.py. Prints a Markdown table for README.md.

Usage (from the repo root):
  uv run python bench/accuracy.py                       # the README sets
  uv run python bench/accuracy.py --sets 3:12:default 22:30:40:300 --out /tmp/pc-bench
Sets are SEED:PHOTOS:FACE_PX ("default" = make_event_set's own range, else MIN:MAX), optionally
followed by /OPTION=VALUE,... for other make_event_set options, e.g. 52:30:40:300/quality=50 or
55:20:40:400/size=6000x4000,max-people=10. --no-cli skips the face_recognition CLI (faster).
  uv run python bench/accuracy.py --no-cli --sets $(cat bench/robustness_sets.txt)   # README robustness table
Seeds 11-16 are calibration seeds (bench/calibrate.py): don't report them.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent
DEFAULT_SETS = ["3:12:default", "3:30:40:300", "21:30:40:300", "22:30:default", "23:30:40:120"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def last_line(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.strip().splitlines()[-1].split())


def bench_set(spec: str, out: Path, cpus: int, with_cli: bool = True) -> list[dict]:
    spec, _, extra = spec.partition("/")
    seed, photos, *face = spec.split(":")
    face_px = None if face == ["default"] else ":".join(face)
    options = [kv.split("=", 1) for kv in extra.split(",") if kv]
    root = out / (f"seed{seed}-n{photos}-{(face_px or 'default').replace(':', '-')}"
                  + "".join(f"-{k}{v}" for k, v in options))
    shutil.rmtree(root, ignore_errors=True)
    gen = [sys.executable, SHARED / "tools" / "make_event_set.py", "--people", SHARED / "faces" / "people",
           "--backdrops", SHARED / "faces" / "nofaces", "--out", root / "events", "--photos", photos, "--seed", seed]
    if face_px:
        gen += ["--face-px", face_px]
    for k, v in options:
        gen += [f"--{k}", v]
    run(gen, check=True)
    events = root / "events"
    label = f"seed {seed}, {photos} photos, faces {face_px or '48:420'} px" + "".join(f", {k} {v}" for k, v in options)
    rows = []

    # photocheck
    env = dict(os.environ, PHOTOCHECK_DB=f"sqlite:///{root / 'photocheck.db'}")
    pc = BIN / "photocheck"
    run([pc, "roster", "import", events / "roster" / "no_consent.csv"], env=env, check=True)
    run([pc, "enroll", events / "roster" / "photos"], env=env, check=True)
    t0 = time.perf_counter()
    scan = run([pc, "scan", events / "photos", "--json", root / "report.json", "--jobs", cpus], env=env)
    secs = time.perf_counter() - t0
    if scan.returncode not in (0, 1):
        raise SystemExit(f"photocheck scan failed:\n{scan.stderr}")
    fig = last_line(run([sys.executable, SHARED / "tools" / "score_scan.py", "--truth", events / "truth.json",
                         "--report", root / "report.json"]).stdout)
    rows.append({"set": label, "tool": "photocheck", "secs": secs, **fig})
    if not with_cli:
        return rows

    # face_recognition CLI, one known photo per listed student
    known = root / "known"
    known.mkdir()
    for d in sorted((events / "roster" / "photos").iterdir()):
        first = sorted(d.iterdir())[0]
        shutil.copy(first, known / f"{d.name}{first.suffix}")
    t0 = time.perf_counter()
    fr = run([BIN / "face_recognition", "--cpus", cpus, known, events / "photos"])
    secs = time.perf_counter() - t0
    (root / "fr_cli.txt").write_text(fr.stdout)
    fig = last_line(run([sys.executable, SHARED / "tools" / "score_scan.py", "--truth", events / "truth.json",
                         "--fr-cli", root / "fr_cli.txt"]).stdout)
    rows.append({"set": label, "tool": "face_recognition CLI", "secs": secs, **fig})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=DEFAULT_SETS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-cli", action="store_true", help="photocheck only (skip the face_recognition CLI)")
    args = ap.parse_args(argv)
    if not (SHARED / "tools" / "make_event_set.py").is_file():
        print("needs ../shared (faces and tools) beside the repo", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.sets:
        new = bench_set(spec, args.out, args.cpus, with_cli=not args.no_cli)
        rows += new
        for r in new:
            print(f"{r['set']} | {r['tool']}: missed={r['missed']} false_blocked={r['false_blocked']} "
                  f"review={r['review']} errors={r['errors']} identified={r['identified']} "
                  f"wrong_id={r.get('wrong_id', '-')} {r['secs']:.1f}s", file=sys.stderr)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"--cpus {args.cpus}\n")
    # Times go to stderr only: accuracy does not depend on load, speed does (see bench/speed.py).
    print("| event set | tool | missed photos | false blocks | review | errors | listed faces identified "
          "| consenting faces named |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['tool']} | {r['missed']} | {r['false_blocked']} | {r['review']} | {r['errors']} "
              f"| {r['identified']} | {r.get('wrong_id', 'n/a')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
