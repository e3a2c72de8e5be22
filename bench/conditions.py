#!/usr/bin/env python3
"""Accuracy by capture condition x face size: photocheck beside the face_recognition CLI.

For each face-size range it makes ONE event set with ../shared/tools/make_event_set.py --degrade,
the conditions taking turns photo by photo (so every condition gets --per-condition photos), runs
photocheck (roster import, enroll, scan) and the face_recognition CLI on it once (bench/accuracy.py),
then scores each condition's photos separately with ../shared/tools/score_scan.py. Prints a
Markdown table for docs/benchmarks.md.

Usage (from the repo root):
  uv run --frozen python bench/conditions.py                       # the conditions table
  uv run --frozen python bench/conditions.py --per-condition 2 --no-cli --sizes 36:64
Seeds 11-19 and 41-49 are calibration seeds (bench/calibrate.py): don't report them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

from machine import describe  # bench/machine.py (the script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy  # noqa: E402  (bench/accuracy.py: set generation, photocheck and CLI runs, scoring)

CONDITIONS = ["none", "motion:5", "motion:9", "motion:13", "defocus:2", "dark", "jpeg:30", "reshare:2048", "gray"]
LABELS = {"none": "clean", "motion:5": "motion blur 5 px", "motion:9": "motion blur 9 px",
          "motion:13": "motion blur 13 px", "defocus:2": "defocus (sigma 2 px)", "dark": "dark + sensor noise",
          "jpeg:30": "JPEG quality 30", "reshare:2048": "re-shared at 2048 px", "gray": "grayscale"}
# (face size range, seed): seeds never used for calibration.
SIZES = {"36:64": 61, "80:200": 62}


def by_condition(truth_path: Path, out_dir: Path) -> dict[str, Path]:
    """One truth.json per condition, holding that condition's photos only."""
    truth = json.loads(truth_path.read_text())
    out: dict[str, Path] = {}
    for cond in dict.fromkeys(p.get("degradation", "none") for p in truth["photos"]):
        p = out_dir / f"truth-{cond.replace(':', '')}.json"
        p.write_text(json.dumps(dict(truth, photos=[ph for ph in truth["photos"]
                                                    if ph.get("degradation", "none") == cond])))
        out[cond] = p
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), help="face-size ranges MIN:MAX (seeds: %s)" % SIZES)
    ap.add_argument("--seed", type=int, help="one seed for every size (default: one per size, see --sizes)")
    ap.add_argument("--conditions", nargs="+", default=CONDITIONS)
    ap.add_argument("--per-condition", type=int, default=4, help="photos per condition and size")
    ap.add_argument("--max-people", type=int, default=2)
    ap.add_argument("--out", type=Path, default=accuracy.REPO / "bench" / "out")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-cli", action="store_true", help="photocheck only (skip the face_recognition CLI)")
    ap.add_argument("--reuse", action="store_true", help="reuse event sets already generated in --out")
    args = ap.parse_args(argv)
    if not (accuracy.SHARED / "tools" / "make_event_set.py").is_file():
        print("needs ../shared (faces and tools) beside the repo", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        seed = args.seed if args.seed is not None else SIZES.get(size, 63)
        n = args.per_condition * len(args.conditions)
        spec = f"{seed}:{n}:{size}/max-people={args.max_people},degrade={';'.join(args.conditions)}"
        root, _ = accuracy.make_set(spec, args.out, reuse=args.reuse)
        report, secs = accuracy.run_photocheck(root, args.cpus)
        print(f"faces {size} px, seed {seed}: photocheck scan {secs:.0f}s", file=sys.stderr)
        cli = None
        if not args.no_cli:
            cli, secs = accuracy.run_cli(root, args.cpus)
            print(f"faces {size} px, seed {seed}: face_recognition CLI {secs:.0f}s", file=sys.stderr)
        for cond, truth in by_condition(root / "events" / "truth.json", root).items():
            pc = accuracy.score(truth, report=report)
            fr = accuracy.score(truth, fr_cli=cli) if cli else None
            rows.append((size, seed, cond, pc, fr))
            print(f"{size} {cond}: photocheck {pc} | CLI {fr}", file=sys.stderr)

    print(f"{date.today()}; {describe()}; "
          f"{args.per_condition} photos per condition and size, up to {args.max_people} people a photo\n")
    print("| faces | condition | photos | photocheck missed | photocheck review | photocheck identified "
          "| photocheck false blocks | CLI missed | CLI identified |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, seed, cond, pc, fr in rows:
        print(f"| {size.replace(':', '–')} px (seed {seed}) | {LABELS.get(cond, cond)} | {pc['photos']} "
              f"| {pc['missed']} | {pc['review']} | {pc['identified']} | {pc['false_blocked']} "
              f"| {fr['missed'] if fr else 'n/a'} | {fr['identified'] if fr else 'n/a'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
