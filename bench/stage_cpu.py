#!/usr/bin/env python3
"""CPU time of each stage of screening one photo, in one process on one thread (a benchmark).

    .venv/bin/python bench/stage_cpu.py /tmp/pc-speed/set/events/photos          # first 16 photos
    .venv/bin/python bench/stage_cpu.py PHOTOS -n 30 --set quantized=false       # the float detector

Runs the scan worker's stages one after the other on each photo, with the thresholds of
models/thresholds.toml ([detector] overrides with --set), and prints the mean CPU ms a photo
(`time.process_time`: user + system of this process, so other load on the machine matters less
than for wall time). The stages are those of photocheck/pipeline.py, which reads each photo through
its UprightView (never an upright array): load (read, sha256, decode), working-size copies
(engine.pass_inputs), detect (CenterFace passes, boxes, sharpness), crops, dHash, encode
(landmarks, chips, ResNet); two rows in parentheses time the main-pass copy with and without its
block averaging (UprightView.resized). A scan runs them in several threads, so its CPU a photo is
a little higher (docs/benchmarks.md, "Scan process layout").
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=Path, help="a folder of photos (e.g. an event set's photos/)")
    ap.add_argument("-n", type=int, default=16, help="photos to time (the first n by name)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="[detector] setting for this run, e.g. quantized=false or tile_rows=0")
    args = ap.parse_args(argv)

    from photocheck.engine import FaceEngine
    from photocheck.groups import dhash
    from photocheck.images import load_image
    from photocheck.thresholds import load_thresholds

    settings = load_thresholds().detector
    for kv in args.set:
        key, value = kv.split("=", 1)
        old = getattr(settings, key)
        settings = dataclasses.replace(settings, **{key: (value.lower() == "true") if isinstance(old, bool)
                                                    else type(old)(value)})
    engine = FaceEngine(settings, threads=1)
    files = sorted(p for p in args.photos.iterdir() if p.is_file())[:args.n]
    if not files:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    cpu: dict[str, float] = {}

    def timed(stage: str, fn, *a):
        t0 = time.process_time()
        out = fn(*a)
        cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - t0
        return out

    faces = 0
    engine.detect(load_image(files[0]).view)  # warm-up: onnxruntime's first run allocates its arena
    for f in files:
        img = timed("load (read, sha256, decode)", load_image, f)
        inputs = timed("working-size copies", engine.pass_inputs, img.view)
        dets = timed("detect (both passes)", engine.detect, img.view, inputs)
        crops = timed("face crops", engine.encoding_crops, img.view, dets)
        timed("dHash", dhash, inputs[0])
        timed("encode", engine.encode_crops, crops)
        faces += len(dets)
        # Not a stage: the main-pass copy without block averaging, for comparison.
        size = FaceEngine.work_size(img.view.width, img.view.height, settings.long_side)
        timed("(main copy, block-averaged)", img.view.resized, size)
        timed("(main copy, bilinear alone)", img.view.resized, size, False)
    n = len(files)
    print(f"{n} photos, {faces / n:.1f} faces a photo; detector: "
          f"{'int8' if settings.quantized else 'float'}, tile_rows {settings.tile_rows}")
    print("| stage | CPU ms a photo |\n|---|---|")
    for stage, secs in cpu.items():
        print(f"| {stage} | {1000 * secs / n:.0f} |")
    total = sum(v for k, v in cpu.items() if not k.startswith("("))
    print(f"| **total** (without the comparison rows) | **{1000 * total / n:.0f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
