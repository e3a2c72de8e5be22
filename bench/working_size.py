#!/usr/bin/env python3
"""Detection recall vs the main pass's working size ([detector] long_side) on calibration event sets.

    nice .venv/bin/python bench/working_size.py --sizes 1600,1984,2000 SET_DIR...

Each SET_DIR is an event set made by ../shared/tools/make_event_set.py whose name carries its seed as
`s<N>` (the folders bench/calibrate.py --cache and bench/blur_match.py leave); calibration seeds only
(11-19, 41-49): the size chosen here is a threshold. For every photo and size it runs the engine's
detection alone (`FaceEngine.detect`, everything else as in models/thresholds.toml) and prints per size:
true faces found (IoU >= 0.3 with a truth box, as bench/calibrate.py), the listed ones among them,
detections matching no truth face (false, or boxed off the face), detection CPU s a photo, and
each face not found (set, photo, condition, width).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blur_match import seed_of  # noqa: E402
from calibrate import CALIBRATION_SEEDS, REPO  # noqa: E402

sys.path.insert(0, str(REPO))
from photocheck.engine import FaceEngine, box_iou  # noqa: E402
from photocheck.images import load_image  # noqa: E402
from photocheck.thresholds import load_thresholds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[1600, 1984, 2000],
                    help="main-pass long sides to try, comma-separated (default 1600,1984,2000)")
    ap.add_argument("sets", type=Path, nargs="+", help="event set folders (make_event_set --out)")
    args = ap.parse_args(argv)
    bad = [s.name for s in args.sets if seed_of(s) not in CALIBRATION_SEEDS]
    if bad:
        ap.error(f"{bad}: not calibration seeds (11-19, 41-49 in the folder name as s<N>)")

    base = load_thresholds().detector
    engines = {ls: FaceEngine(dataclasses.replace(base, long_side=ls)) for ls in args.sizes}
    stats = {ls: {"found": 0, "listed": 0, "extra": 0, "cpu": 0.0, "not_found": []} for ls in args.sizes}
    faces = listed = photos = 0
    for set_dir in args.sets:
        truth = json.loads((set_dir / "truth.json").read_text())
        for ph in truth["photos"]:
            img = load_image(set_dir / ph["file"])
            people = ph["people"]
            photos += 1
            faces += len(people)
            listed += sum(p["no_consent"] for p in people)
            for ls, engine in engines.items():
                t0 = time.process_time()
                dets = engine.detect(img.view)
                s = stats[ls]
                s["cpu"] += time.process_time() - t0
                for p in people:
                    if max((box_iou(tuple(p["box"]), d.box) for d in dets), default=0.0) >= 0.3:
                        s["found"] += 1
                        s["listed"] += p["no_consent"]
                    else:
                        s["not_found"].append(f"{set_dir.name[:12]} {Path(ph['file']).name} "
                                              f"{ph.get('degradation', 'none')} {p['face_px']} px")
                s["extra"] += sum(max((box_iou(d.box, tuple(p["box"])) for p in people), default=0.0) < 0.3
                                  for d in dets)
        print(f"{set_dir.name}: done", file=sys.stderr, flush=True)

    print(f"{photos} photos, {faces} faces ({listed} listed)\n")
    print("| main-pass long side | faces found | listed faces found | detections matching no face | detect CPU s/photo |")
    print("|---|---|---|---|---|")
    for ls, s in stats.items():
        print(f"| {ls} | {s['found']}/{faces} | {s['listed']}/{listed} | {s['extra']} | {s['cpu'] / photos:.2f} |")
    for ls, s in stats.items():
        print(f"\nnot found at {ls}: " + ("; ".join(s["not_found"]) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
