#!/usr/bin/env python3
"""Speed and scale of `photocheck scan` vs the face_recognition CLI (a benchmark, not a test).

One run:
  1. builds an event set with ../shared/tools/make_event_set.py (default 60 photos, 4000x3000,
     faces 40-300 px; cached in --out and reused while the parameters are the same),
  2. photocheck: fresh database, roster import + enroll, `photocheck scan --json --jobs N`,
  3. the same folder scanned again unchanged (the sha256 scan cache),
  4. the face_recognition CLI: `face_recognition --cpus N KNOWN PHOTOS`, KNOWN = one
     <student_id>.jpg per listed student,
  5. a scaling run: folders of e.g. 100/500/2000 photos made from the event set's files (copied
     under new names with a few distinct trailing bytes after the JPEG end marker, so every file
     has its own sha256 and nothing is served from the cache), each scanned into a fresh database.
Every command runs as a subprocess. Peak RSS is the sum, over the whole process tree (the scan
process and its workers), of each process's own peak (VmHWM, kept by the kernel, read from /proc
every 50 ms): never below the tree's real peak, which sampling the current RSS can miss between
two samples. Peak PSS is sampled every 0.5 s (reading it walks the page tables, which slows the
measured process if done often).
Prints photos/s, peak RSS and score_scan's figures for both tools, and a Markdown table.

Usage (from the repo root; Linux only because of /proc):
  .venv/bin/python bench/speed.py                                 # 60 photos + scaling 100 500 2000
  .venv/bin/python bench/speed.py --scale 100 300 --out /tmp/pc-speed
  .venv/bin/python bench/speed.py --scale                          # no scaling run
Seeds 11-16 are calibration seeds (bench/calibrate.py): the default seed is 31.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from machine import describe  # bench/machine.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- process-tree RSS

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens: split after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pids(root: int) -> list[int]:
    """root and all its descendants."""
    kids = _children_map()
    pids, stack = [], [root]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(kids.get(pid, []))
    return pids


def run_measured(cmd: list, env: dict | None = None) -> dict:
    """Run cmd; return wall seconds, user and system CPU seconds of the whole tree (every process
    the command waited for), peak RSS (MB: each process's VmHWM, summed over the tree), peak PSS
    (MB, sampled), exit code, stdout, stderr."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or base_env())
    hwm: dict[int, int] = {}
    peak_pss = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_pss
        n = 0
        while not stop.is_set():
            pids = tree_pids(proc.pid)
            for pid in pids:
                hwm[pid] = max(hwm.get(pid, 0), _status_kb(pid, "VmHWM"))
            if n % 10 == 0:
                peak_pss = max(peak_pss, sum(_pss_kb(p) for p in pids))
            n += 1
            stop.wait(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    secs = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    th.join()
    return {"secs": secs, "user": ru1.ru_utime - ru0.ru_utime, "sys": ru1.ru_stime - ru0.ru_stime,
            "peak_mb": sum(hwm.values()) / 1024, "peak_pss_mb": peak_pss / 1024, "rc": proc.returncode,
            "stdout": out, "stderr": err}


# --------------------------------------------------------------------------- helpers

def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", base_env())
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def base_env() -> dict:
    """The environment for every measured command. PYTHONDONTWRITEBYTECODE is dropped: with it,
    each `photocheck` start compiles ~300 modules from source (~4 s of CPU), which no installed
    copy does (pip/uv write or ship .pyc); the first, unmeasured command writes them."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def score(truth: Path, *, report: Path | None = None, fr_cli: Path | None = None) -> dict[str, str]:
    cmd = [sys.executable, SHARED / "tools" / "score_scan.py", "--truth", truth]
    cmd += ["--report", report] if report else ["--fr-cli", fr_cli]
    out = run(cmd).stdout.strip().splitlines()
    return dict(part.split("=", 1) for part in out[-1].split()) if out else {}


def make_set(out: Path, photos: int, seed: int, face_px: str, size: str | None) -> Path:
    params = {"photos": photos, "seed": seed, "face_px": face_px, "size": size}
    stamp = out / "params.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == params and (out / "events" / "truth.json").is_file():
        return out / "events"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, SHARED / "tools" / "make_event_set.py", "--people", SHARED / "faces" / "people",
           "--backdrops", SHARED / "faces" / "nofaces", "--out", out / "events", "--photos", photos,
           "--seed", seed, "--face-px", face_px]
    if size:
        cmd += ["--size", size]
    t0 = time.perf_counter()
    run(cmd, check=True)
    print(f"built {photos} photos in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    stamp.write_text(json.dumps(params))
    return out / "events"


def photocheck_env(db: Path) -> dict:
    return dict(base_env(), PHOTOCHECK_DB=f"sqlite:///{db}", PHOTOCHECK_USER="bench")


def fresh_db(root: Path, events: Path) -> dict:
    db = root / "photocheck.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    env = photocheck_env(db)
    run([BIN / "photocheck", "roster", "import", events / "roster" / "no_consent.csv"], env=env, check=True)
    run([BIN / "photocheck", "enroll", events / "roster" / "photos"], env=env, check=True)
    return env


def scan(env: dict, photos: Path, report: Path, cpus: int) -> dict:
    r = run_measured([BIN / "photocheck", "scan", photos, "--json", report, "--jobs", cpus], env=env)
    if r["rc"] not in (0, 1):
        raise SystemExit(f"photocheck scan failed ({r['rc']}):\n{r['stderr'][-3000:]}")
    return r


def replicate(src: Path, dest: Path, n: int) -> None:
    """n distinct files (own names, own sha256) from the JPEGs in src, without re-encoding."""
    files = sorted(src.glob("*.jpg"))
    if dest.is_dir() and len(list(dest.iterdir())) == n:
        return
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for i in range(n):
        f = files[i % len(files)]
        data = f.read_bytes()
        # Bytes after the JPEG end-of-image marker are ignored by decoders: same pixels, new sha256.
        (dest / f"{f.stem}_{i:05d}.jpg").write_bytes(data + f"photocheck-bench-copy-{i}".encode())


def fmt_score(fig: dict) -> str:
    keys = ("photos", "missed", "false_blocked", "review", "errors", "detected", "identified", "wrong_id")
    return " ".join(f"{k}={fig[k]}" for k in keys if k in fig)


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--face-px", default="40:300")
    ap.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: make_event_set's 4000x3000)")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--scale", type=int, nargs="*", default=[100, 500, 2000],
                    help="folder sizes for the scaling run (none: skip it)")
    ap.add_argument("--no-cli", action="store_true", help="skip the face_recognition CLI")
    ap.add_argument("--out", type=Path, default=Path("/tmp/photocheck-speed"))
    args = ap.parse_args(argv)
    if not (SHARED / "tools" / "make_event_set.py").is_file():
        print("needs ../shared (faces and tools) beside the repo", file=sys.stderr)
        return 2
    if not Path("/proc/self/status").is_file():
        print("needs Linux /proc to measure the process tree's memory", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    events = make_set(args.out / "set", args.photos, args.seed, args.face_px, args.size)
    photos = events / "photos"
    n = len(list(photos.iterdir()))
    truth = events / "truth.json"
    rows = []

    # photocheck, first scan then an unchanged rescan (same database: the cache)
    work = args.out / "photocheck"
    work.mkdir(exist_ok=True)
    env = fresh_db(work, events)
    first = scan(env, photos, work / "report.json", args.cpus)
    fig = score(truth, report=work / "report.json")
    rows.append({"tool": "photocheck scan", **first, "fig": fig})
    print(f"photocheck: {first['secs']:.1f} s, {n / first['secs']:.2f} photos/s, peak RSS {first['peak_mb']:.0f} MB "
          f"(PSS {first['peak_pss_mb']:.0f} MB), CPU {first['user']:.1f} s user + {first['sys']:.1f} s system; "
          f"{fmt_score(fig)}", file=sys.stderr)
    again = scan(env, photos, work / "report2.json", args.cpus)
    fig2 = score(truth, report=work / "report2.json")
    rep2 = json.loads((work / "report2.json").read_text())
    cached = sum(bool(im.get("cached")) for im in rep2["images"])
    rows.append({"tool": "photocheck rescan (unchanged)", **again, "fig": fig2})
    print(f"rescan: {again['secs']:.2f} s ({first['secs'] / again['secs']:.0f}x faster), CPU {again['user']:.2f} s user "
          f"+ {again['sys']:.2f} s system (first scan {first['user'] + first['sys']:.1f} s: "
          f"{(first['user'] + first['sys']) / (again['user'] + again['sys']):.0f}x), "
          f"{cached}/{len(rep2['images'])} from cache, scan id {rep2['scan']['id']}; {fmt_score(fig2)}", file=sys.stderr)

    # face_recognition CLI
    if not args.no_cli:
        known = args.out / "known"
        shutil.rmtree(known, ignore_errors=True)
        known.mkdir()
        for d in sorted((events / "roster" / "photos").iterdir()):
            first_ref = sorted(d.iterdir())[0]
            shutil.copy(first_ref, known / f"{d.name}{first_ref.suffix}")
        fr = run_measured([BIN / "face_recognition", "--cpus", args.cpus, known, photos])
        (args.out / "fr_cli.txt").write_text(fr["stdout"])
        fig = score(truth, fr_cli=args.out / "fr_cli.txt")
        rows.append({"tool": "face_recognition CLI", **fr, "fig": fig})
        print(f"face_recognition CLI: {fr['secs']:.1f} s, {n / fr['secs']:.2f} photos/s, "
              f"peak RSS {fr['peak_mb']:.0f} MB; {fmt_score(fig)}", file=sys.stderr)

    # scaling
    scale_rows = []
    for size in args.scale:
        folder = args.out / f"scale{size}" / "photos"
        replicate(photos, folder, size)
        env_s = fresh_db(folder.parent, events)
        r = scan(env_s, folder, folder.parent / "report.json", args.cpus)
        rep = json.loads((folder.parent / "report.json").read_text())
        counts = rep["counts"]
        scale_rows.append({"photos": size, **r, "stored": len(rep["images"]), "counts": counts})
        print(f"scale {size}: {r['secs']:.1f} s, {size / r['secs']:.2f} photos/s, peak RSS {r['peak_mb']:.0f} MB, "
              f"{len(rep['images'])} in report, {counts}", file=sys.stderr)

    print(f"Machine: {describe()}; --cpus {args.cpus}; "
          f"{n} photos {args.size or '4000x3000'}, faces {args.face_px} px, seed {args.seed}\n")
    print("| tool | time | photos/s | peak RSS (tree, sum of VmHWM) | peak PSS (tree) | missed photos | false blocks | review | errors "
          "| faces detected | listed faces identified | consenting faces named |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = r["fig"]
        print(f"| {r['tool']} | {r['secs']:.1f} s | {n / r['secs']:.2f} | {r['peak_mb']:.0f} MB | {r['peak_pss_mb']:.0f} MB "
              f"| {f.get('missed')} "
              f"| {f.get('false_blocked')} | {f.get('review')} | {f.get('errors')} | {f.get('detected', 'n/a')} "
              f"| {f.get('identified')} | {f.get('wrong_id', 'n/a')} |")
    if len(rows) >= 2:
        print(f"\nRescan of the unchanged folder: {rows[0]['secs'] / rows[1]['secs']:.0f}x faster than the first scan.")
    if scale_rows:
        print("\n| photos in folder | time | s/photo | photos/s | peak RSS (tree, sum of VmHWM) | peak PSS (tree) | photos in report |")
        print("|---|---|---|---|---|---|---|")
        for r in scale_rows:
            print(f"| {r['photos']} | {r['secs']:.0f} s | {r['secs'] / r['photos']:.2f} | {r['photos'] / r['secs']:.2f} "
                  f"| {r['peak_mb']:.0f} MB | {r['peak_pss_mb']:.0f} MB | {r['stored']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
