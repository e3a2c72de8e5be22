#!/usr/bin/env python3
"""Peak memory and CPU time of CenterFace detection per setting (a benchmark, not a test).

Table (default): each setting runs in its own fresh process that does what a scan's detect worker
does per photo: load_image() (decode + EXIF), FaceEngine.detect() (no dlib loaded), malloc_trim
(worker.release_memory). The processes are fed the same photos in lock-step (photo by photo, one
process at a time, the order rotating), so load from other jobs on the shared machine falls on all
settings alike; settings run in groups, each with the reference beside them. Per setting:
  * peak RSS: VmHWM from /proc/self/status after all photos: the whole process (Python, numpy,
    PIL, onnxruntime, the model, decoding and detection),
  * CPU s/photo of detect() (time.process_time, all threads; the first photo left out: it grows
    the arena), and relative to the reference in the same group,
  * whether every photo's detections match the reference's ("main": the untiled engine with
    main's onnxruntime settings, same threads): same faces, raw CenterFace boxes and scores within
    1e-4, identical mapped boxes.
--baseline DIR adds a row for the code and thresholds in DIR (e.g. a checkout of main).

Settings: [detector] tile_rows / tile_margin (models/thresholds.toml) and onnxruntime / malloc
options applied in the child (see SETTINGS). --verify compares untiled vs thresholds.toml on every
photo of every set; --margins measures the tile margin needed (whole-graph tiles vs the engine's
stem/head split), in one process.

Usage (repo root; Linux only because of /proc):
  .venv/bin/python bench/detect_memory.py --baseline /work/main          # table, threads 1 and 2
  .venv/bin/python bench/detect_memory.py --n 8 --rounds 1 --only toml --threads 2
  .venv/bin/python bench/detect_memory.py --margins
  .venv/bin/python bench/detect_memory.py --verify --baseline /work/main --sets /tmp/detmem/sets/*/photos
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
#   arena: "on"    the engine's choice (untiled: its session arena; tiled: one arena shared by stem
#                  and head, registered with onnxruntime's environment)
#          "off"   enable_cpu_mem_arena = False
#          "own"   tiled, but stem and head each with its own session arena
#          "same"  one environment arena with kSameAsRequested growth instead of powers of two
#   pattern: 1     enable_mem_pattern
#   shrink: 1      run option memory.enable_memory_arena_shrinkage on every run
#   release: 1     that run option on each photo's last run only (arena returned between photos)
#   glibc-default: 1  keep glibc's malloc defaults. Otherwise the child sets what a scan worker sets
#                  (worker._return_big_buffers_at_once: one malloc arena, every buffer >= 1 MB its own
#                  mmap, returned at once when freed; glibc's default threshold rises up to 32 MB)
SETTINGS: dict[str, tuple[int | None, int | None, dict]] = {
    "main": (0, 0, {}),  # the reference: whole image, session arena (main's onnxruntime settings)
    "arena-same": (0, 0, {"arena": "same"}),
    "arena-off": (0, 0, {"arena": "off"}),
    "mem-pattern": (0, 0, {"pattern": 1}),
    "shrink-every-run": (0, 0, {"shrink": 1}),
    "release-per-photo": (0, 0, {"release": 1}),
    "tile128": (128, 32, {}),
    "tile192": (192, 32, {}),
    "tile256": (256, 32, {}),
    "tile384": (384, 32, {}),
    "tile192-own-arenas": (192, 32, {"arena": "own"}),
    "tile192-same": (192, 32, {"arena": "same"}),
    "tile192-arena-off": (192, 32, {"arena": "off"}),
    "tile128-release": (128, 32, {"release": 1}),
    "tile192-release": (192, 32, {"release": 1}),
    "main-glibc-malloc": (0, 0, {"glibc-default": 1}),
    "tile192-glibc-malloc": (192, 32, {"glibc-default": 1}),
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

    if not opts.get("glibc-default"):  # as a scan worker does (worker._return_big_buffers_at_once)
        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    import onnxruntime as ort

    import photocheck.engine as engine

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
            # release: the engine's last run of a photo is the coarse pass's head (or whole-graph)
            # run, the one that asks for the output maps by name (the stem's runs ask for None)
            if opts.get("shrink") or (opts.get("release") and Session.last_run and output_names is not None):
                run_options = ort.RunOptions()
                run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            return super().run(output_names, input_feed, run_options)

    Session.last_run = False
    ort.InferenceSession = Session
    if opts.get("release"):  # flag the coarse pass: its head run is the last run of each photo
        def run_centerface(self, px, w, h, _orig=engine.FaceEngine._run_centerface):
            Session.last_run = px.shape[:2] == self.work_size(w, h, self.settings.coarse_long_side)[::-1]
            try:
                return _orig(self, px, w, h)
            finally:
                Session.last_run = False

        engine.FaceEngine._run_centerface = run_centerface


def child(spec: dict) -> None:
    """Load the engine, then serve stdin lines: {"photo": path} -> {"cpu", "raw", "boxes", "scores"};
    {"quit": 1} -> {"peak_mb", "rss_end_mb"}. The first line out says {"ready", "rss_init_mb", ...}."""
    import ctypes
    import dataclasses

    _apply_options(spec["ort"])
    from photocheck.engine import FaceEngine
    from photocheck.images import load_image
    from photocheck.thresholds import load_thresholds

    libc = ctypes.CDLL("libc.so.6")
    st = load_thresholds().detector
    over = {k: spec[k] for k in ("tile_rows", "tile_margin") if spec[k] is not None}
    st = dataclasses.replace(st, **over)

    class Engine(FaceEngine):
        last_raw = None

        def detect_raw(self, rgb, *args, **kw):
            self.last_raw = super().detect_raw(rgb, *args, **kw)
            return self.last_raw

    def say(d: dict) -> None:
        sys.stdout.write(json.dumps(d) + "\n")
        sys.stdout.flush()

    eng = Engine(st, threads=spec["threads"], encoder=False)
    say({"ready": 1, "rss_init_mb": status_mb("VmRSS"), "tile_rows": getattr(st, "tile_rows", 0),
         "tile_margin": getattr(st, "tile_margin", 0)})
    for line in sys.stdin:
        cmd = json.loads(line)
        if "quit" in cmd:
            break
        img = load_image(cmd["photo"])
        t0 = time.process_time()
        found = eng.detect(img.rgb)
        dt = time.process_time() - t0
        boxes, _ = eng.last_raw
        del img
        libc.malloc_trim(0)  # as the scan's detect worker does after each photo (worker.release_memory)
        say({"cpu": dt, "raw": boxes.tolist(), "boxes": [list(d.box) for d in found],
             "scores": [d.score for d in found]})
    say({"peak_mb": status_mb("VmHWM"), "rss_end_mb": status_mb("VmRSS")})


# --------------------------------------------------------------------------- parent

class Child:
    """One setting in its own process (fresh, so its peak RSS is its own)."""

    def __init__(self, name: str, threads: int, code: Path | None = None):
        rows, margin, opts = SETTINGS["toml" if code else name]
        spec = {"tile_rows": rows, "tile_margin": margin, "ort": opts, "threads": threads}
        code = code or REPO
        env = dict(os.environ, PYTHONPATH=str(code))  # `code`'s photocheck and models/thresholds.toml
        self.name, self.threads = name, threads
        self.proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], cwd=code, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        self.results: list[dict] = []

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: child exited with {self.proc.wait()}")
        return json.loads(line)

    def _send(self, d: dict) -> dict:
        self.proc.stdin.write(json.dumps(d) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def detect(self, path: Path) -> None:
        self.results.append(self._send({"photo": str(path)}))

    def close(self) -> dict:
        self.info.update(self._send({"quit": 1}))
        self.proc.wait()
        return self.info

    def cpu(self) -> float:
        steady = [r["cpu"] for r in self.results[1:]] or [r["cpu"] for r in self.results]
        return sum(steady) / len(steady)


def lockstep(children: list[Child], photos: list[Path], rounds: int) -> None:
    """Every child detects every photo, photo by photo, the children's order rotating: load from other
    jobs on the (shared) machine then falls on all settings alike. Children run one at a time."""
    k = 0
    for _ in range(rounds):
        for path in photos:
            for c in children[k % len(children):] + children[:k % len(children)]:
                c.detect(path)
            k += 1
    for c in children:
        c.close()


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


def table(names: list[str], threads: list[int], photos: list[Path], rounds: int, baseline: Path | None,
          group: int) -> None:
    print(f"{len(photos)} photos from {photos[0].parent}, {rounds} round(s) in lock-step, settings in groups "
          f"of {group} + the reference; CPU s/photo of detect() (first photo left out)", file=sys.stderr)
    names = [n for n in names if n != "main"]
    vs = "main branch" if baseline else "main"
    head = " | ".join(f"peak RSS MB ({t} thr) | CPU s/photo ({t} thr) | CPU vs {vs} ({t} thr)" for t in threads)
    rows: dict[str, dict] = {}
    for t in threads:
        for g in range(0, max(1, len(names)), group):
            for attempt in (1, 2):  # once more if a child is killed from outside (a shared machine)
                members = [Child("main", t)] + ([Child("main branch", t, baseline)] if baseline else [])
                members += [Child(n, t) for n in names[g:g + group]]
                try:
                    lockstep(members, photos, rounds)
                    break
                except RuntimeError as exc:
                    for c in members:
                        c.proc.kill()
                        c.proc.wait()
                    if attempt == 2:
                        raise
                    print(f"  {exc}: group run again", file=sys.stderr, flush=True)
            ref = members[0]
            rel = members[1] if baseline else ref  # CPU relative to main's code when it is there
            for c in members:
                same = all(compare(ref.results[:len(photos)], c.results[i:i + len(photos)])[0]
                           for i in range(0, len(c.results), len(photos)))
                _, worst, faces = compare(ref.results[:len(photos)], c.results[:len(photos)])
                row = rows.setdefault(c.name, {"info": c.info, "same": True})
                row["same"] &= same
                row.setdefault("peak", {})[t] = max(row.get("peak", {}).get(t, 0), c.info["peak_mb"])
                row.setdefault("cpu", {}).setdefault(t, []).append(c.cpu())
                row.setdefault("rel", {}).setdefault(t, []).append(c.cpu() / rel.cpu() - 1)
                print(f"  {c.name:22s} threads={t} peak {c.info['peak_mb']:6.1f} MB (engine loaded "
                      f"{c.info['rss_init_mb']:5.1f}, end {c.info['rss_end_mb']:5.1f}) detect {c.cpu():.3f} s "
                      f"({100 * (c.cpu() / rel.cpu() - 1):+.1f}% vs {rel.name})  identical={same} "
                      f"({faces} faces, max diff {worst:.1e})", file=sys.stderr, flush=True)
    print(f"\n| setting | tiles (rows/margin) | {head} | detections identical |")
    print("|---|---|" + "---|---|---|" * len(threads) + "---|")
    order = (["main branch"] if baseline else []) + ["main"] + names
    for name in order:
        row = rows[name]
        info = row["info"]
        tiles = f"{info['tile_rows']}/{info['tile_margin']}" if info["tile_rows"] else "whole"
        cells = " | ".join(f"{row['peak'][t]:.0f} | {statistics.mean(row['cpu'][t]):.3f} | "
                           f"{100 * statistics.mean(row['rel'][t]):+.1f}%" for t in threads)
        print(f"| {name} | {tiles} | {cells} | {'yes' if row['same'] else 'NO'} |")


def verify(sets: list[Path], baseline: Path | None) -> bool:
    """Reference (untiled; with --baseline, main's code) vs thresholds.toml's settings on every photo of
    every set, 1 thread."""
    ok = True
    before = "main branch" if baseline else "untiled"
    print(f"\n| photo set | photos | faces | peak RSS MB {before} -> thresholds.toml | identical (max diff) |")
    print("|---|---|---|---|---|")
    for folder in sets:
        photos = photos_in(folder)
        if not photos:
            continue
        ref, got = Child(before, 1, baseline) if baseline else Child("main", 1), Child("toml", 1)
        lockstep([ref, got], photos, 1)
        same, worst, faces = compare(ref.results, got.results)
        ok &= same
        print(f"| {folder} | {len(photos)} | {faces} | {ref.info['peak_mb']:.0f} -> {got.info['peak_mb']:.0f} | "
              f"{'yes' if same else 'NO'} ({worst:.1e}) |", flush=True)
    return ok


def margins(photos: list[Path]) -> None:
    """Max |heatmap difference| vs the whole graph on the whole 1600 px image, and whether the decoded
    detections are identical, for (a) the whole graph run on overlapping bands of rows (CenterFace's
    receptive field is hundreds of pixels) and (b) the engine's split (only the stem is banded). CPU: the 1600 px pass only, best of 3, 1 thread."""
    import dataclasses

    import numpy as np

    from photocheck.engine import FaceEngine
    from photocheck.images import ArrayView, load_image
    from photocheck.thresholds import load_thresholds

    st = load_thresholds().detector
    whole = FaceEngine(dataclasses.replace(st, tile_rows=0, tile_margin=0), encoder=False)
    imgs = []
    for p in photos:
        rgb = load_image(p).rgb
        h, w = rgb.shape[:2]
        px = np.asarray(ArrayView(rgb).resized(FaceEngine.work_size(w, h, st.long_side)))
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
            whole._run_net = lambda _px, _m=maps: _m  # decode these maps as the engine does
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
    for rows in (128, 192, 256):
        for margin in (8, 16, 24, 32, 64):
            eng = FaceEngine(dataclasses.replace(st, tile_rows=rows, tile_margin=margin), encoder=False)
            report("stem bands (engine)", rows, margin, eng._run_net)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--photos", type=Path, default=SPEED_SET, help="folder for the table and --margins")
    ap.add_argument("--n", type=int, default=16, help="photos per run in the table (--margins: 3)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the photos (lock-step)")
    ap.add_argument("--group", type=int, default=6, help="settings run side by side (plus the reference)")
    ap.add_argument("--only", help="comma-separated settings for the table: " + ", ".join(SETTINGS))
    ap.add_argument("--baseline", type=Path, help="also run thresholds.toml + code of this checkout (e.g. main)")
    ap.add_argument("--verify", action="store_true", help="untiled vs thresholds.toml on every photo of every set")
    ap.add_argument("--sets", type=Path, nargs="*", default=[], help="more photo folders for --verify")
    ap.add_argument("--margins", action="store_true", help="tile margin study (one process)")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    if args.verify:
        sets = ([SPEED_SET] if SPEED_SET.is_dir() else []) + args.sets
        if (SHARED / "faces").is_dir():
            sets += [d for d in sorted((SHARED / "faces").iterdir()) if d.is_dir()]
        return 0 if verify(sets, args.baseline) else 1
    photos = photos_in(args.photos)
    if not photos:
        sys.exit(f"no photos in {args.photos} (make them with bench/speed.py or pass --photos DIR)")
    if args.margins:
        margins(photos[: min(args.n, 3)])
        return 0
    names = args.only.split(",") if args.only else DEFAULT_TABLE
    table(names, [int(t) for t in args.threads.split(",")], photos[: args.n], args.rounds, args.baseline, args.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
