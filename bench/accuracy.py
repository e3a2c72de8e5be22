#!/usr/bin/env python3
"""Accuracy and speed of photocheck vs the face_recognition CLI on composed event sets.

For each set it runs ../shared/tools/make_event_set.py, then
  photocheck: roster import, enroll, scan --json   (fresh database)
  face_recognition CLI: `face_recognition --cpus N KNOWN PHOTOS` with one <student_id>.jpg per
                        listed student (the way a school would script it)
and scores both with ../shared/tools/score_scan.py. Prints a Markdown table for docs/benchmarks.md.

Usage (from the repo root):
  uv run python bench/accuracy.py                       # the accuracy table
  uv run python bench/accuracy.py --sets 3:12:default 22:30:40:300 --out /tmp/pc-bench
Sets are SEED:PHOTOS:FACE_PX ("default" = make_event_set's own range, else MIN:MAX), optionally
followed by /OPTION=VALUE,... for other make_event_set options, e.g. 52:30:40:300/quality=50 or
55:20:40:400/size=6000x4000,max-people=10. --no-cli skips the face_recognition CLI (faster).
  uv run python bench/accuracy.py --no-cli --sets $(cat bench/robustness_sets.txt)   # the robustness table
Seeds 11-16 are calibration seeds (bench/calibrate.py): don't report them.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import describe  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent
DEFAULT_SETS = ["3:12:default", "3:30:40:300", "21:30:40:300", "22:30:default", "23:30:40:120"]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def last_line(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.strip().splitlines()[-1].split())


def make_set(spec: str, out: Path, reuse: bool = False) -> tuple[Path, str]:
    """Generate the event set of `spec` under `out`; returns (its root folder, a label). `reuse`:
    keep a set already generated there (its scan database and reports are made afresh)."""
    spec, _, extra = spec.partition("/")
    seed, photos, *face = spec.split(":")
    face_px = None if face == ["default"] else ":".join(face)
    options = [kv.split("=", 1) for kv in extra.split(",") if kv]
    root = out / (f"seed{seed}-n{photos}-{(face_px or 'default').replace(':', '-')}"
                  + "".join(f"-{k}{v}".replace(":", "").replace(";", "") for k, v in options))
    label = f"seed {seed}, {photos} photos, faces {face_px or '48:420'} px" + "".join(f", {k} {v}" for k, v in options)
    if reuse and (root / "events" / "truth.json").is_file():
        for old in ("photocheck.db", "report.json", "fr_cli.txt"):
            (root / old).unlink(missing_ok=True)
        return root, label
    shutil.rmtree(root, ignore_errors=True)
    gen = [sys.executable, SHARED / "tools" / "make_event_set.py", "--people", SHARED / "faces" / "people",
           "--backdrops", SHARED / "faces" / "nofaces", "--out", root / "events", "--photos", photos, "--seed", seed]
    if face_px:
        gen += ["--face-px", face_px]
    for k, v in options:
        # a --degrade list is written with ";" in a set spec (its "," separates options)
        gen += [f"--{k}", v.replace(";", ",") if k == "degrade" else v]
    run(gen, check=True)
    return root, label


def run_photocheck(root: Path, cpus: int) -> tuple[Path, float]:
    """Roster import, enroll and scan of root/events in a fresh database; (JSON report, scan seconds)."""
    events = root / "events"
    env = dict(os.environ, PHOTOCHECK_DB=f"sqlite:///{root / 'photocheck.db'}")
    pc = BIN / "photocheck"
    run([pc, "roster", "import", events / "roster" / "no_consent.csv"], env=env, check=True)
    run([pc, "enroll", events / "roster" / "photos"], env=env, check=True)
    t0 = time.perf_counter()
    scan = run([pc, "scan", events / "photos", "--json", root / "report.json", "--jobs", cpus], env=env)
    secs = time.perf_counter() - t0
    if scan.returncode not in (0, 1):
        raise SystemExit(f"photocheck scan failed:\n{scan.stderr}")
    return root / "report.json", secs


def run_cli(root: Path, cpus: int) -> tuple[Path, float]:
    """The face_recognition CLI on root/events, one known photo per listed student; (its output, seconds)."""
    events = root / "events"
    known = root / "known"
    shutil.rmtree(known, ignore_errors=True)
    known.mkdir()
    for d in sorted((events / "roster" / "photos").iterdir()):
        first = sorted(d.iterdir())[0]
        shutil.copy(first, known / f"{d.name}{first.suffix}")
    t0 = time.perf_counter()
    fr = run([BIN / "face_recognition", "--cpus", cpus, known, events / "photos"])
    secs = time.perf_counter() - t0
    (root / "fr_cli.txt").write_text(fr.stdout)
    return root / "fr_cli.txt", secs


def score(truth: Path, report: Path | None = None, fr_cli: Path | None = None) -> dict[str, str]:
    """score_scan.py's figures (its last line) for a photocheck report or the CLI's output."""
    src = ["--report", report] if report else ["--fr-cli", fr_cli]
    return last_line(run([sys.executable, SHARED / "tools" / "score_scan.py", "--truth", truth, *src]).stdout)


def bench_set(spec: str, out: Path, cpus: int, with_cli: bool = True) -> list[dict]:
    root, label = make_set(spec, out)
    truth = root / "events" / "truth.json"
    report, secs = run_photocheck(root, cpus)
    rows = [{"set": label, "tool": "photocheck", "secs": secs, **score(truth, report=report)}]
    if with_cli:
        cli_out, secs = run_cli(root, cpus)
        rows.append({"set": label, "tool": "face_recognition CLI", "secs": secs, **score(truth, fr_cli=cli_out)})
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
    print(f"Machine: {describe()}; "
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
