"""Speed and memory of clip screening (photocheck/video.py) on this machine.

Makes an H.264 clip with PyAV (faces from sample_images/ walking across a moving backdrop, with a
cut every few seconds), screens it with the real engine against the demo's listed student, and
prints frames decoded and screened per second, seconds of clip per second of scan (wall and CPU),
and the peak RSS of the process that screens (the clip is made in a child process).

    .venv/bin/python bench/video_speed.py                       # 1280x720, 20 s, 30 fps
    .venv/bin/python bench/video_speed.py --size 1920x1080 --seconds 10 --interval 0.5
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from photocheck.engine import FaceEngine  # noqa: E402
from photocheck.screening import ReferenceSet  # noqa: E402
from photocheck.thresholds import load_thresholds  # noqa: E402
from photocheck.video import screen_video  # noqa: E402

FACES = [("sample_images/obama1.jpg", (112, 638, 405, 345)), ("sample_images/obama3.jpg", (284, 948, 599, 633)),
         ("sample_images/biden1.jpg", (233, 738, 544, 427))]


def tile(rel: str, box, face_px: int) -> np.ndarray:
    t, r, b, l = box
    m = (r - l) * 0.6
    with Image.open(REPO / rel) as im:
        im = im.convert("RGB").crop((int(l - m), int(t - m), int(r + m), int(b + m)))
        k = face_px / (r - l)
        return np.asarray(im.resize((round(im.width * k), round(im.height * k))))


def make_clip(path: Path, w: int, h: int, seconds: float, fps: int) -> None:
    tiles = [tile(rel, box, max(60, h // 5)) for rel, box in FACES]
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        x = np.linspace(0, 1, w)[None, :, None]
        y = np.linspace(0, 1, h)[:, None, None]
        for i in range(round(seconds * fps)):
            scene = i // (fps * 4)  # a cut every 4 s
            base = 50 + 60 * ((x + scene * 0.3) % 1) + 50 * y + 8 * np.sin(i / 7 + x * 9)
            a = np.broadcast_to(base * np.array([1.0, 0.9, 0.8]), (h, w, 3)).astype(np.uint8).copy()
            for k, t in enumerate(tiles):
                if (scene + k) % 3 == 2:
                    continue  # each face is off screen one scene in three
                th_, tw = t.shape[:2]
                px = int((k * w / 3 + i * 2) % max(1, w - tw))
                py = int(h * 0.15 + 20 * np.sin(i / 11 + k))
                a[py:py + th_, px:px + tw] = t[:h - py]
            a += rng.integers(0, 3, a.shape, dtype=np.uint8)  # sensor noise: no free compression
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--interval", type=float, help="override [video] sample_interval_s")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime threads of the detector")
    ap.add_argument("--make-only", metavar="PATH", help=argparse.SUPPRESS)  # child: write the clip, exit
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    if args.make_only:
        make_clip(Path(args.make_only), w, h, args.seconds, args.fps)
        return
    th = load_thresholds()
    if args.interval:
        th = dataclasses.replace(th, video=dataclasses.replace(th.video, sample_interval_s=args.interval))
    engine = FaceEngine(th.detector, threads=args.threads)
    ref = np.asarray(Image.open(REPO / "roster/photos/D0001/biden2.jpg").convert("RGB"))
    refs = ReferenceSet.build({"D0001": engine.encode(ref, engine.detect(ref))[:1]}, ["D0001"])
    with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        # In a child process, so that the peak RSS below is the screening's, not the encoder's.
        subprocess.run([sys.executable, __file__, "--make-only", str(clip), "--size", args.size,
                        "--seconds", str(args.seconds), "--fps", str(args.fps)], check=True,
                       stderr=subprocess.DEVNULL)
        with av.open(str(clip)) as c:
            decoded = c.streams.video[0].frames
        c0, t0 = time.process_time(), time.perf_counter()
        r = screen_video(clip, engine, refs, th)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    screened = int(r.reasons[-1].split()[0]) if r.verdict != "error" else 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{w}x{h} {args.fps} fps, {r.duration_s} s clip, every {th.video.sample_interval_s:g} s: "
          f"verdict {r.verdict}, {len(r.faces)} tracked faces")
    print(f"  {decoded} frames decoded, {screened} screened in {wall:.1f} s wall / {cpu:.1f} s CPU: "
          f"{decoded / wall:.1f} frames/s decoded, {screened / wall:.2f} screened/s; "
          f"{r.duration_s / wall:.2f} s of clip per s of scan (CPU: {r.duration_s / cpu:.2f}); peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
