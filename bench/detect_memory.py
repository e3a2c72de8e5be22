#!/usr/bin/env python3
"""Peak memory and CPU time of CenterFace detection per setting (a benchmark, not a test).

Table (default): each setting runs in a fresh subprocess that does what a scan's detect worker
does per photo: load_image() (decode + EXIF), FaceEngine.detect() (no dlib loaded), malloc_trim
(worker.release_memory). Per setting it reports
  * peak RSS: VmHWM from /proc/self/status after all photos: the whole process (Python, numpy,
    PIL, onnxruntime, the model, decoding and detection),
  * CPU s/photo of detect() (time.process_time, all threads; the first photo is left out: it
    grows the arena), median over --rounds interleaved runs (the machine is shared: CPU time,
    not wall time),
  * whether every photo's detections match the reference (the untiled engine with main's
    onnxruntime settings, 1 thread): same faces, raw CenterFace boxes and scores within 1e-4,
    identical mapped boxes.
--baseline DIR adds a row for the code in DIR (e.g. a checkout of main), same photos.

Settings: [detector] tile_rows / tile_margin (models/thresholds.toml) and onnxruntime / malloc
options applied in the child (see SETTINGS). --verify compares untiled vs thresholds.toml on every
photo of every set; --margins measures the tile margin needed (whole-graph tiles vs the engine's
three-part split), in one process.

Usage (repo root; Linux only because of /proc):
  .venv/bin/python bench/detect_memory.py --baseline /work/main          # table, threads 1 and 2
  .venv/bin/python bench/detect_memory.py --n 10 --rounds 1 --only main,toml
  .venv/bin/python bench/detect_memory.py --margins
  .venv/bin/python bench/detect_memory.py --verify --sets /tmp/detmem/sets/*/photos
Default photos: /tmp/pc-speed/set/events/photos (bench/speed.py's 60 photos, 4000x3000, seed 31);
--verify adds ../shared/faces.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SPEED_SET = Path("/tmp/pc-speed/set/events/photos")
EXTS = {".jpg", ".jpeg", ".png"}

# name -> (tile_rows, tile_margin, options); tile_rows None = thresholds.toml's values. Options:
#   arena: "on"    the engine's choice (untiled: its session arena; tiled: one arena shared by the
#                  three parts, registered with onnxruntime's environment)
#          "off"   enable_cpu_mem_arena = False
#          "own"   tiled, but each part with its own session arena
#          "same"  one environment arena with kSameAsRequested growth instead of powers of two
#   pattern: 1     enable_mem_pattern
#   shrink: 1      run option memory.enable_memory_arena_shrinkage on every run
#   release: 0/1   engine.RELEASE_ARENA (tiled only): the arena is shrunk after each photo's last run
#   mmap: N        mallopt(M_MMAP_THRESHOLD, N) in the child: buffers >= N bytes are always mmapped
#                  (glibc's default threshold moves up to 32 MB as big buffers are freed)
SETTINGS: dict[str, tuple[int | None, int | None, dict]] = {
    "main": (0, 0, {}),  # the reference: whole image, session arena (main's onnxruntime settings)
    "arena-same": (0, 0, {"arena": "same"}),
    "arena-off": (0, 0, {"arena": "off"}),
    "mem-pattern": (0, 0, {"pattern": 1}),
    "shrink-every-run": (0, 0, {"shrink": 1}),
    "tile128-own-arenas": (128, 32, {"arena": "own", "release": 0}),
    "tile128-keep": (128, 32, {"release": 0}),
    "tile192-keep": (192, 32, {"release": 0}),
    "tile256-keep": (256, 32, {"release": 0}),
    "tile384-keep": (384, 32, {"release": 0}),
    "tile128-same-keep": (128, 32, {"arena": "same", "release": 0}),
    "tile128-arena-off": (128, 32, {"arena": "off", "release": 0}),
    "tile128": (128, 32, {"release": 1}),
    "tile192": (192, 32, {"release": 1}),
    "tile256": (256, 32, {"release": 1}),
    "tile128-mmap1M": (128, 32, {"release": 1, "mmap": 1 << 20}),
    "tile256-mmap1M": (256, 32, {"release": 1, "mmap": 1 << 20}),
    "toml": (None, None, {}),  # thresholds.toml and the engine's defaults
}
DEFAULT_TABLE = [n for n in SETTINGS if n != "toml"] + ["toml"]


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTS and p.is_file())


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


# --------------------------------------------------------------------------- child

def _apply_options(opts: dict) -> None:
    import ctypes

    if opts.get("mmap"):
        ctypes.CDLL("libc.so.6").mallopt(-3, int(opts["mmap"]))  # M_MMAP_THRESHOLD
    import onnxruntime as ort

    import photocheck.engine as engine

    if "release" in opts:
        engine.RELEASE_ARENA = bool(opts["release"])
    arena = opts.get("arena", "on")
    if arena in ("off", "own"):
        engine._register_shared_arena = lambda ort: None  # sessions fall back to their own arena
    if arena == "same":
        ort.create_and_register_allocator(
            ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT),
            ort.OrtArenaCfg({"arena_extend_strategy": 1}))
        engine._SHARED_ARENA = True
    base = ort.InferenceSession

    class Session(base):  # type: ignore[misc, valid-type]
        def __init__(self, model, so=None, providers=None, **kw):
            if arena == "off":
                so.enable_cpu_mem_arena = False
            if arena == "same":
                so.add_session_config_entry("session.use_env_allocators", "1")
            if opts.get("pattern"):
                so.enable_mem_pattern = True
            super().__init__(model, so, providers=providers, **kw)

        def run(self, output_names, input_feed, run_options=None):
            if opts.get("shrink"):
                run_options = ort.RunOptions()
                run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            return super().run(output_names, input_feed, run_options)

    ort.InferenceSession = Session


def child(spec: dict) -> dict:
    import ctypes
    import dataclasses

    _apply_options(spec["ort"])
    import photocheck.engine as engine
    from photocheck.engine import FaceEngine
    from photocheck.images import load_image
    from photocheck.thresholds import load_thresholds

    libc = ctypes.CDLL("libc.so.6")
    st = load_thresholds().detector
    over = {k: spec[k] for k in ("tile_rows", "tile_margin") if spec[k] is not None}
    st = dataclasses.replace(st, **over)

    class Engine(FaceEngine):
        last_raw = None

        def detect_raw(self, rgb):
            self.last_raw = super().detect_raw(rgb)
            return self.last_raw

    eng = Engine(st, threads=spec["threads"], encoder=False)
    rss_init = status_mb("VmRSS")
    dets, t_det = [], []
    for path in spec["photos"]:
        img = load_image(path)
        t0 = time.process_time()
        found = eng.detect(img.rgb)
        t_det.append(time.process_time() - t0)
        boxes, _ = eng.last_raw
        del img
        libc.malloc_trim(0)  # as the scan's detect worker does after each photo (worker.release_memory)
        dets.append({"raw": boxes.tolist(), "boxes": [list(d.box) for d in found],
                     "scores": [d.score for d in found]})
    steady = t_det[1:] or t_det
    return {"peak_mb": status_mb("VmHWM"), "rss_init_mb": rss_init, "rss_end_mb": status_mb("VmRSS"),
            "cpu_detect": sum(steady) / len(steady), "tile_rows": getattr(st, "tile_rows", 0),
            "tile_margin": getattr(st, "tile_margin", 0), "release": getattr(engine, "RELEASE_ARENA", False),
            "dets": dets}


# --------------------------------------------------------------------------- parent

def run_child(name: str, threads: int, photos: list[Path], code: Path = REPO) -> dict:
    rows, margin, opts = SETTINGS[name]
    spec = {"tile_rows": rows, "tile_margin": margin, "ort": opts, "threads": threads,
            "photos": [str(p) for p in photos]}
    env = dict(os.environ, PYTHONPATH=str(code))  # `code`'s photocheck and models/thresholds.toml
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=code, env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ref: list[dict], got: list[dict], tol: float = 1e-4) -> tuple[bool, float, int]:
    """(identical?, max abs difference of raw box coordinates/scores, faces) over all photos."""
    same, worst, faces = True, 0.0, 0
    for a, b in zip(ref, got, strict=True):
        faces += len(a["boxes"])
        if len(a["raw"]) != len(b["raw"]) or a["boxes"] != b["boxes"]:
            same, worst = False, float("inf")
            continue
        for ra, rb in zip(a["raw"], b["raw"]):
            worst = max(worst, max(abs(x - y) for x, y in zip(ra, rb)))
        worst = max([worst] + [abs(x - y) for x, y in zip(a["scores"], b["scores"])])
    return same and worst <= tol, worst, faces


def table(names: list[str], threads: list[int], photos: list[Path], rounds: int, baseline: Path | None) -> None:
    print(f"{len(photos)} photos from {photos[0].parent}, {rounds} interleaved round(s); CPU s/photo of "
          "detect() without the first photo (median of rounds), peak RSS (max of rounds)", file=sys.stderr)
    ref = run_child("main", 1, photos)
    rows = ([("main branch", baseline)] if baseline else []) + [(n, None) for n in names]
    runs: dict[tuple[str, int], list[dict]] = {}
    for rnd in range(rounds):
        for name, code in rows:
            for t in threads:
                r = run_child("toml" if code else name, t, photos, code or REPO)
                runs.setdefault((name, t), []).append(r)
                same, worst, faces = compare(ref["dets"], r["dets"])
                print(f"  [{rnd + 1}/{rounds}] {name:20s} threads={t} peak {r['peak_mb']:6.1f} MB "
                      f"(engine loaded {r['rss_init_mb']:5.1f}, end {r['rss_end_mb']:5.1f}) "
                      f"detect {r['cpu_detect']:.3f} s  identical={same} ({faces} faces, max diff {worst:.1e})",
                      file=sys.stderr, flush=True)
    head = " | ".join(f"peak RSS MB ({t} thr) | CPU s/photo ({t} thr)" for t in threads)
    print(f"\n| setting | tile_rows/margin | {head} | detections identical |")
    print("|---|---|" + "---|---|" * len(threads) + "---|")
    for name, _ in rows:
        cells, ident, first = [], True, runs[name, threads[0]][0]
        for t in threads:
            rs = runs[name, t]
            ident &= all(compare(ref["dets"], r["dets"])[0] for r in rs)
            cells.append(f"{max(r['peak_mb'] for r in rs):.0f} | {statistics.median(r['cpu_detect'] for r in rs):.3f}")
        tiles = f"{first['tile_rows']}/{first['tile_margin']}" if first["tile_rows"] else "whole"
        print(f"| {name} | {tiles} | {' | '.join(cells)} | {'yes' if ident else 'NO'} |")


def verify(sets: list[Path]) -> bool:
    """Reference (untiled) vs thresholds.toml's settings on every photo of every set, 1 thread."""
    ok = True
    print("\n| photo set | photos | faces | peak RSS MB untiled -> thresholds.toml | identical (max diff) |")
    print("|---|---|---|---|---|")
    for folder in sets:
        photos = photos_in(folder)
        if not photos:
            continue
        ref = run_child("main", 1, photos)
        got = run_child("toml", 1, photos)
        same, worst, faces = compare(ref["dets"], got["dets"])
        ok &= same
        print(f"| {folder} | {len(photos)} | {faces} | {ref['peak_mb']:.0f} -> {got['peak_mb']:.0f} | "
              f"{'yes' if same else 'NO'} ({worst:.1e}) |", flush=True)
    return ok


def margins(photos: list[Path]) -> None:
    """Max |heatmap difference| vs the whole graph on the whole 1600 px image, and whether the decoded
    detections are identical, for (a) the whole graph run on overlapping bands of rows (CenterFace's
    receptive field is hundreds of pixels) and (b) the engine's three parts (only the stem and the
    tail are banded). CPU: the 1600 px pass only, best of 3, 1 thread."""
    import dataclasses

    import numpy as np

    from photocheck.engine import FaceEngine
    from photocheck.images import load_image
    from photocheck.thresholds import load_thresholds

    st = load_thresholds().detector
    whole = FaceEngine(dataclasses.replace(st, tile_rows=0, tile_margin=0), encoder=False)
    imgs = []
    for p in photos:
        rgb = load_image(p).rgb
        h, w = rgb.shape[:2]
        px = np.asarray(FaceEngine.resize(rgb, FaceEngine.work_size(w, h, st.long_side)))
        imgs.append((px, w, h, whole._run_net(px), whole._run_centerface(px, w, h)))

    def best_cpu(fn) -> float:
        ts = []
        for _ in range(3):
            t0 = time.process_time()
            fn()
            ts.append(time.process_time() - t0)
        return min(ts)

    def whole_graph_bands(px: np.ndarray, rows: int, margin: int) -> list[np.ndarray]:
        hn, outs = px.shape[0], []
        for y0 in range(0, hn, rows):
            y1 = min(hn, y0 + rows)
            lo, hi = max(0, y0 - margin), min(hn, y1 + margin)
            res = whole._run_net(px[lo:hi])
            outs = outs or [np.empty((1, r.shape[1], hn // 4, r.shape[3]), r.dtype) for r in res]
            for dst, src in zip(outs, res):
                dst[:, :, y0 // 4:y1 // 4] = src[:, :, (y0 - lo) // 4:(y1 - lo) // 4]
        return outs

    base_cpu = best_cpu(lambda: whole._run_net(imgs[0][0]))
    print(f"{len(photos)} photos, 1600 px pass; whole graph on the whole image: {base_cpu:.3f} CPU s\n")
    print("| tiling | band rows | margin px | max abs heatmap diff | max abs diff, other outputs | "
          "detections identical | CPU s (1600 px pass) |")
    print("|---|---|---|---|---|---|---|")

    def report(kind: str, rows: int, margin: int, net) -> None:
        heat = other = 0.0
        same = True
        for px, w, h, ref_maps, ref_dets in imgs:
            maps = net(px)
            heat = max(heat, float(np.abs(maps[0] - ref_maps[0]).max()))
            other = max([other] + [float(np.abs(a - b).max()) for a, b in zip(maps[1:], ref_maps[1:])])
            orig = whole._run_net
            whole._run_net = lambda _px, release=False, _m=maps: _m  # decode these maps as the engine does
            try:
                dets = whole._run_centerface(px, w, h)
            finally:
                whole._run_net = orig
            same &= all(np.array_equal(a, b) for a, b in zip(dets, ref_dets))
        cpu = best_cpu(lambda: net(imgs[0][0]))
        print(f"| {kind} | {rows} | {margin} | {heat:.1e} | {other:.1e} | {'yes' if same else 'NO'} | {cpu:.3f} |",
              flush=True)

    for margin in (32, 64, 128, 192, 256, 320):
        report("whole graph", 256, margin, lambda px, m=margin: whole_graph_bands(px, 256, m))
    for rows in (128, 256):
        for margin in (8, 16, 24, 32, 64):
            eng = FaceEngine(dataclasses.replace(st, tile_rows=rows, tile_margin=margin), encoder=False)
            report("stem + tail (engine)", rows, margin, eng._run_net)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--photos", type=Path, default=SPEED_SET, help="folder for the table and --margins")
    ap.add_argument("--n", type=int, default=16, help="photos per run in the table (--margins: 3)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per setting (CPU: median)")
    ap.add_argument("--only", help="comma-separated settings for the table: " + ", ".join(SETTINGS))
    ap.add_argument("--baseline", type=Path, help="also run thresholds.toml + code of this checkout (e.g. main)")
    ap.add_argument("--verify", action="store_true", help="untiled vs thresholds.toml on every photo of every set")
    ap.add_argument("--sets", type=Path, nargs="*", default=[], help="more photo folders for --verify")
    ap.add_argument("--margins", action="store_true", help="tile margin study (one process)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.verify:
        sets = ([SPEED_SET] if SPEED_SET.is_dir() else []) + args.sets
        if (SHARED / "faces").is_dir():
            sets += [d for d in sorted((SHARED / "faces").iterdir()) if d.is_dir()]
        return 0 if verify(sets) else 1
    photos = photos_in(args.photos)
    if not photos:
        sys.exit(f"no photos in {args.photos} (make them with bench/speed.py or pass --photos DIR)")
    if args.margins:
        margins(photos[: min(args.n, 3)])
        return 0
    names = args.only.split(",") if args.only else DEFAULT_TABLE
    table(names, [int(t) for t in args.threads.split(",")], photos[: args.n], args.rounds, args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
