#!/usr/bin/env python3
"""Experiment: blurred faces matched against references degraded the same way (issue 14).

    nice .venv/bin/python bench/blur_match.py /tmp/quality-sets/small_s4[1-4]_* /tmp/blurmatch-sets/cal_s4[78]
    nice .venv/bin/python bench/blur_match.py --validate --threshold 0.62 /tmp/blurmatch-sets/rep_s6*

Each argument is an event set made by ../shared/tools/make_event_set.py (seed read from its name, `s<N>`).
For every detected face (IoU >= 0.3 with a truth face, as bench/calibrate.py) failing the blur gates of
[quality] (min_sharpness, min_weak_sharpness), each listed student's reference face is scaled to the probe's
width (rounded to --width-step px), blurred with a set of kernels (a box motion blur of 3-15 px along the
probe's weakest direction and its two 22.5-degree neighbours; Gaussian sigma 1-3), detected and encoded again
by the engine; d_matched = the smallest distance over those variants. Prints:
  * d_plain and d_matched distributions, same person / different people (different people pooled over the
    references of every set given, so each face meets more strangers than its own set lists)
  * a per-set simulation of "a blur-failing face passing every non-blur gate is ruled out when d_matched > T
    for every listed student", review share and missed listed photos vs today's rules, over a sweep of T,
    and a "bound" row (every eligible face ruled out: the most such a rule could save)
  * CPU time per reference variant (the cost of computing them at enrolment instead)

Calibration seeds (11-19, 41-49) only for the sweep; other seeds need --validate with an explicit --threshold
and print the simulation at that T only. Distances and no encodings go to --dump.
Results and conclusion (not adopted): docs/benchmarks.md "Blurred faces matched against blurred references".
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import CALIBRATION_SEEDS, REPO, _engine, load_upright, pct, process_photo, reference_face  # noqa: E402

sys.path.insert(0, str(REPO))

LENGTHS = (3, 5, 7, 9, 11, 13, 15)  # motion blur lengths, probe pixels
SIGMAS = (1.0, 2.0, 3.0)  # Gaussian blur, probe pixels
N_ANGLES = 8  # motion directions over 180 degrees


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def weakest_angle(crop: np.ndarray, size: int) -> int:
    """Index (of N_ANGLES over 180 deg, x right, y down) of the direction with the least 2nd-derivative
    energy: the direction a motion blur ran. Same measure as engine.face_quality's weak_sharpness."""
    from photocheck.engine import _ANGLES

    g = np.asarray(Image.fromarray(crop).convert("L").resize((size, size), Image.Resampling.BILINEAR), np.float32)
    c = g[1:-1, 1:-1]
    ixx = g[1:-1, 2:] + g[1:-1, :-2] - 2 * c
    iyy = g[2:, 1:-1] + g[:-2, 1:-1] - 2 * c
    ixy = (g[2:, 2:] - g[2:, :-2] - g[:-2, 2:] + g[:-2, :-2]) / 4
    co, si = np.cos(_ANGLES), np.sin(_ANGLES)
    d2 = co[:, None, None] ** 2 * ixx + 2 * (co * si)[:, None, None] * ixy + si[:, None, None] ** 2 * iyy
    i16 = int(np.argmin((d2 * d2).mean(axis=(1, 2))))
    return round(i16 * N_ANGLES / len(_ANGLES)) % N_ANGLES


def motion_blur(a: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Mean of `length` copies of `a` shifted along `angle` (x right, y down), edges repeated."""
    p = length // 2 + 1
    padded = np.pad(a.astype(np.float32), ((p, p), (p, p), (0, 0)), mode="edge")
    h, w = a.shape[:2]
    acc = np.zeros((h, w, a.shape[2]), np.float32)
    offs = range(-(length // 2), length - length // 2)
    for t in offs:
        dy, dx = round(t * np.sin(angle)), round(t * np.cos(angle))
        acc += padded[p + dy:p + dy + h, p + dx:p + dx + w]
    return (acc / len(offs)).round().clip(0, 255).astype(np.uint8)


class References:
    """Reference faces (largest strong face of each roster photo, as enrolment) and their degraded
    variants, cached by (photo hash, width, kernel): the same table enrolment could store."""

    def __init__(self):
        self.refs: dict[str, dict] = {}  # sha -> {"person", "sid", "crop", "box", "enc"}
        self.cache: dict[tuple, np.ndarray] = {}
        self.n_encoded = self.n_fallback = 0
        self.cpu = 0.0

    def add_set(self, sd: Path, sid_person: dict[str, str]) -> dict[str, list[str]]:
        eng = _engine()
        out: dict[str, list[str]] = {}
        for sdir in sorted((sd / "roster" / "photos").iterdir()):
            for f in sorted(sdir.glob("*.jpg")):
                sha = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
                if sha not in self.refs:
                    rgb = load_upright(f)
                    d = reference_face(eng, rgb)
                    if d is None:
                        continue
                    t, r, b, l = d.box
                    fw = r - l
                    y0, x0 = max(0, t - fw), max(0, l - fw)
                    crop = rgb[y0:b + fw, x0:r + fw]
                    self.refs[sha] = {"person": sid_person.get(sdir.name, sdir.name), "sid": sdir.name,
                                      "crop": crop, "box": (t - y0, r - x0, b - y0, l - x0),
                                      "enc": eng.encode(rgb, [d])[0]}
                out.setdefault(sdir.name, []).append(sha)
        return out

    def variants(self, sha: str, width: int, kernels: list[tuple]) -> list[np.ndarray]:
        """Encodings of the reference scaled so its face is `width` px, blurred by each kernel."""
        from photocheck.engine import Detection, box_iou

        missing = [k for k in kernels if (sha, width, k) not in self.cache]
        if missing:
            c0 = cpu_s()
            eng = _engine()
            ref = self.refs[sha]
            t, r, b, l = ref["box"]
            s = width / (r - l)
            crop = ref["crop"]
            small = np.asarray(Image.fromarray(crop).resize(
                (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))), Image.Resampling.LANCZOS))
            want = tuple(round(v * s) for v in ref["box"])
            jobs = []
            for k in missing:
                if k[0] == "m":
                    img = motion_blur(small, k[1], k[2] * np.pi / N_ANGLES)
                else:
                    img = np.asarray(Image.fromarray(small).filter(ImageFilter.GaussianBlur(k[1])))
                dets = eng.detect(img)
                best = max(dets, key=lambda d: box_iou(d.box, want), default=None)
                if best is None or box_iou(best.box, want) < 0.3:
                    best = Detection(box=want, score=0.0, sharpness=0.0)  # not found: the known box
                    self.n_fallback += 1
                jobs.append((img, best))
            for k, e in zip(missing, eng.encode_crops(jobs)):
                self.cache[(sha, width, k)] = e
            self.n_encoded += len(missing)
            self.cpu += cpu_s() - c0
        return [self.cache[(sha, width, k)] for k in kernels]


def probe_angle(args: tuple[str, list]) -> list[int]:
    """Weakest-direction index of each detection of one photo (runs in a worker)."""
    from calibrate import _engine as eng_

    path, boxes = args
    rgb = load_upright(Path(path))
    return [weakest_angle(rgb[max(0, t):b, max(0, l):r], eng_().settings.quality_crop_px) for t, r, b, l in boxes]


def seed_of(sd: Path) -> int:
    m = re.search(r"(?:^|_)s(\d+)(?:_|$)", sd.name)
    if not m:
        raise SystemExit(f"{sd}: no seed (s<N>) in the set's name")
    return int(m.group(1))


def analyse_set(sd: Path, pool, refs: References, width_step: int, all_angles: bool) -> list[dict]:
    from photocheck.thresholds import load_thresholds

    q = load_thresholds().quality
    truth = json.loads((sd / "truth.json").read_text())
    sid_person = {p["student_id"]: p["person"] for ph in truth["photos"] for p in ph["people"]}
    own = refs.add_set(sd, sid_person)
    jobs = [(str(sd / p["file"]), p["people"]) for p in truth["photos"]]
    photos = list(pool.map(process_photo, jobs))
    angles = list(pool.map(probe_angle, [(r["path"], [f["box"] for f in r["faces"]]) for r in photos]))
    out = []
    for res, ph, angs in zip(photos, truth["photos"], angles):
        res["set"], res["seed"], res["degradation"] = sd.name, seed_of(sd), ph.get("degradation", "none")
        res["listed"] = truth["no_consent"]
        for f, ai in zip(res["faces"], angs):
            e = np.asarray(f.pop("enc"))
            f["person"] = res_person = (ph["people"][f["truth"]]["person"] if f["truth"] is not None else None)
            f["angle"] = ai
            # d_plain to the set's own listed students (their own references), as screening does.
            f["dist"] = {sid: float(min(np.linalg.norm(refs.refs[h]["enc"] - e) for h in hs))
                         for sid, hs in own.items()}
            f["blur_fail"] = f["sharpness"] < q.min_sharpness or (
                f["quality"] is not None and f["quality"]["weak_sharpness"] < q.min_weak_sharpness)
            if not f["blur_fail"]:
                continue
            w = max(width_step, int(round(f["width"] / width_step)) * width_step)
            angs_k = range(N_ANGLES) if all_angles else [(ai + o) % N_ANGLES for o in (-1, 0, 1)]
            kernels = [("m", n, a) for a in angs_k for n in LENGTHS] + [("g", s) for s in SIGMAS]
            # d_matched per reference photo: own set's listed students, and every pooled reference
            # of another person (different-person pairs only: a pooled reference may be the very
            # source photo pasted into this set).
            f["matched"] = {}
            f["matched_pool"] = {}
            for sid, hs in own.items():
                f["matched"][sid] = float(min(np.linalg.norm(v - e) for h in hs for v in refs.variants(h, w, kernels)))
            for h, ref in refs.refs.items():
                if ref["person"] != res_person:
                    d = float(min(np.linalg.norm(v - e) for v in refs.variants(h, w, kernels)))
                    f["matched_pool"][h] = d
                    f.setdefault("plain_pool", {})[h] = float(np.linalg.norm(ref["enc"] - e))
        out.append(res)
    return out


def face_rules(f: dict, rules, match, T: float | None, small_gate_is_blur: bool) -> str:
    """'block' / 'review' / 'clear' for one face; T=None: today's rules."""
    from photocheck.engine import FaceQuality
    from photocheck.screening import quality_problem

    dmin = min(f["dist"].values(), default=9.0)
    if dmin <= match.block_distance:
        return "block"
    qf = FaceQuality(**{k: f["quality"][k] for k in FaceQuality.__dataclass_fields__}) if f["quality"] else None
    problem = quality_problem(f["width"], f["sharpness"], qf, rules)
    # The small-face margin as it was when this experiment ran (docs/benchmarks.md's figures); today's rule,
    # screening.needs_margin, also covers faces under [quality] soft_weak_sharpness.
    small = f["width"] < rules.small_face_px and dmin <= match.review_distance_small
    if dmin <= match.review_distance or small:
        return "review"
    if problem is None:
        return "clear"
    if T is None or not f["blur_fail"]:
        return "review"
    loose = dataclasses.replace(rules, min_sharpness=0.0, min_weak_sharpness=-1.0,
                                **({"small_min_sharpness": 0.0} if small_gate_is_blur else {}))
    if quality_problem(f["width"], f["sharpness"], qf, loose) is not None:
        return "review"
    return "clear" if min(f["matched"].values(), default=9.0) > T else "review"


def simulate(photos: list[dict], T: float | None, small_gate_is_blur: bool = False) -> dict:
    from photocheck.thresholds import load_thresholds

    th = load_thresholds()
    out: dict = {}
    for ph in photos:
        s = out.setdefault(ph["set"], {"n": 0, "review": 0, "missed": 0, "listed_faces_cleared": 0})
        vs = [face_rules(f, th.quality, th.match, T, small_gate_is_blur) for f in ph["faces"]]
        v = "block" if "block" in vs else "review" if "review" in vs else "clear"
        has_listed = any(p["no_consent"] for p in [f for f in ph["faces"] if f["truth"] is not None] + ph["missed"])
        s["n"] += 1
        s["review"] += v == "review"
        s["blocked"] = s.get("blocked", 0) + (v == "block")
        s["missed"] += v == "clear" and has_listed
        s["listed_faces_cleared"] += sum(f["no_consent"] and fv == "clear" for f, fv in zip(ph["faces"], vs))
        s["ruled_out"] = s.get("ruled_out", 0) + sum(
            fv == "clear" and f.get("blur_fail") and f["quality"] is not None for f, fv in zip(ph["faces"], vs))
    return out


def dist_line(name: str, a: list[float]) -> str:
    a = np.asarray(a)
    if not len(a):
        return f"  {name:34s}    0"
    return (f"  {name:34s} {len(a):4d}  {a.min():.3f}  {pct(a, 5):.3f}  {pct(a, 50):.3f}  {pct(a, 95):.3f}"
            f"  {a.max():.3f}")


def report(photos: list[dict], validate_t: float | None) -> None:
    from photocheck.thresholds import load_thresholds

    th = load_thresholds()
    bf = [(ph, f) for ph in photos for f in ph["faces"] if f.get("blur_fail") and f["truth"] is not None]
    print(f"\n-- blur-failing faces matched to a truth face: {len(bf)} "
          f"(of {sum(f['truth'] is not None for ph in photos for f in ph['faces'])} detected true faces)")
    if validate_t is None:
        same_p, same_m, diff_p, diff_m, diffpool_p, diffpool_m = [], [], [], [], [], []
        same_gate = []  # same-person d_matched of faces that pass every non-blur gate
        for ph, f in bf:
            for sid, d in f["dist"].items():
                (same_p if sid == f["student_id"] else diff_p).append(d)
            for sid, d in f["matched"].items():
                (same_m if sid == f["student_id"] else diff_m).append(d)
                if sid == f["student_id"] and f["width"] >= th.quality.small_face_px:
                    same_gate.append(d)
            diffpool_p += list(f.get("plain_pool", {}).values())
            diffpool_m += list(f["matched_pool"].values())
        print("   pairs (face, listed student)           n    min     p5    p50    p95    max")
        print(dist_line("same person    d_plain", same_p))
        print(dist_line("same person    d_matched", same_m))
        print(dist_line("  ... faces >= small_face_px, d_matched", same_gate))
        print(dist_line("diff. person   d_plain (own set)", diff_p))
        print(dist_line("diff. person   d_matched (own set)", diff_m))
        print(dist_line("diff. person   d_plain (pooled refs)", diffpool_p))
        print(dist_line("diff. person   d_matched (pooled refs)", diffpool_m))
        if same_m and diffpool_m:
            print(f"   gap: different-person min {min(diffpool_m):.3f} - same-person max {max(same_m):.3f} = "
                  f"{min(diffpool_m) - max(same_m):+.3f}")
        # The rule needs d_matched > T for EVERY listed student: with N listed, a blurred stranger is
        # ruled out with chance ~ (1 - F(T))^N (pairs taken as independent), F = the pairs' share <= T.
        dm = np.asarray(diffpool_m)
        print("\n   T     diff.-person pairs > T | a blurred stranger clears with N listed: N=2      10      50     200")
        for t in np.arange(0.50, 0.72, 0.02):
            p = float((dm > t).mean()) if len(dm) else float("nan")
            print(f"   {t:.2f}  {p:6.1%}" + " " * 52 + "  ".join(f"{p ** n:6.1%}" for n in (2, 10, 50, 200)))
        print("\n   same-person blur-failing faces, by condition: width, d_plain, d_matched")
        for ph, f in sorted(bf, key=lambda x: x[0]["degradation"]):
            if f["student_id"] in f["matched"]:
                print(f"     {ph['degradation']:10s} {f['width']:4d} px  {f['dist'][f['student_id']]:.3f}  "
                      f"{f['matched'][f['student_id']]:.3f}")

    base = simulate(photos, None)
    nb = sum(bool(f.get("blur_fail")) for ph in photos for f in ph["faces"])
    for small_blur in (False, True):
        # T = -1: every blur-failing face that passes the other gates and is beyond the review band.
        e = sum(s["ruled_out"] for s in simulate(photos, -1.0, small_blur).values())
        print(f"   blur-failing detections {nb}; of them eligible for the rule (other gates passed, beyond the "
              f"review band{', small-face sharpness counted as blur' if small_blur else ''}): {e}; ruled out at T: "
              + ", ".join(f"{t:.2f} {sum(s['ruled_out'] for s in simulate(photos, t, small_blur).values())}"
                          for t in ([validate_t] if validate_t is not None else (0.56, 0.60, 0.62, 0.66, 0.70))))
    ts = [validate_t] if validate_t is not None else [round(x, 2) for x in np.arange(0.56, 0.80, 0.02)]
    for small_blur in (False, True):
        print(f"\n-- simulation: review share / missed listed photos / listed faces cleared per set "
              f"({'small-face sharpness gate counted as a blur gate' if small_blur else 'small-face gate kept'})")
        print("   T      " + "".join(f"{'seed ' + str(seed_of(Path(s))):>17s}" for s in base) + "      all")
        # "bound": every eligible face ruled out (T = -1), the most this rule could save.
        rows = [("today", base), ("bound", simulate(photos, -1.0, small_blur))]
        for label, sim in rows + [(f"{t:.2f}", simulate(photos, t, small_blur)) for t in ts]:
            n = sum(s["n"] for s in sim.values())
            print(f"   {label:6s} " + "  ".join(
                f"{s['review'] / s['n']:8.1%} {s['missed']:3d} {s['listed_faces_cleared']:3d} "
                for s in sim.values()) + f"   {sum(s['review'] for s in sim.values()) / n:6.1%} "
                f"{sum(s['missed'] for s in sim.values())} {sum(s['listed_faces_cleared'] for s in sim.values())} "
                f"(blocked {sum(s['blocked'] for s in sim.values()) / n:.1%})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", type=Path, nargs="*", help="event set folders (make_event_set --out)")
    ap.add_argument("--validate", action="store_true", help="reporting seeds: simulate at --threshold only")
    ap.add_argument("--threshold", type=float, help="T for --validate (chosen on calibration seeds)")
    ap.add_argument("--width-step", type=int, default=4, help="reference widths are multiples of this (px)")
    ap.add_argument("--all-angles", action="store_true", help="all 8 motion directions, not the probe's 3")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dump", type=Path, help="write per-face distances (no encodings) as JSON")
    ap.add_argument("--load", type=Path, help="re-analyse a --dump")
    args = ap.parse_args(argv)

    if args.validate and args.threshold is None:
        ap.error("--validate needs the --threshold chosen on calibration seeds")
    if args.load:
        photos = json.loads(args.load.read_text())
    else:
        bad = [sd.name for sd in args.sets if seed_of(sd) not in CALIBRATION_SEEDS]
        if bad and not args.validate:
            ap.error(f"{bad}: reporting seeds; tune on calibration seeds 11-19, 41-49 (or --validate --threshold T)")
    return run(args, photos if args.load else None)


def run(args, photos) -> int:
    from machine import describe

    print(f"machine: {describe()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if photos is None:
        refs = References()
        photos = []
        w0, c0 = time.perf_counter(), cpu_s()
        with ProcessPoolExecutor(args.workers) as pool:
            for sd in args.sets:
                photos += analyse_set(sd, pool, refs, args.width_step, args.all_angles)
                print(f"  {sd.name}: done, {refs.n_encoded} reference variants so far", file=sys.stderr)
        wall, cpu = time.perf_counter() - w0, cpu_s() - c0
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        nb = sum(bool(f.get("blur_fail")) for ph in photos for f in ph["faces"])
        print(f"\n== {len(args.sets)} sets, {len(photos)} photos; {nb} blur-failing detections")
        print(f"   wall {wall:.0f} s; CPU main {cpu:.0f} s (of it reference variants {refs.cpu:.0f} s), "
              f"workers {kids.ru_utime + kids.ru_stime:.0f} s (detect + encode of the photos)")
        print(f"   reference variants encoded: {refs.n_encoded} from {len(refs.refs)} reference photos "
              f"({refs.cpu / max(1, refs.n_encoded) * 1000:.0f} ms CPU each: scale, blur, detect, encode); "
              f"face not re-detected in {refs.n_fallback} (known box used)")
        if args.dump:
            args.dump.write_text(json.dumps(photos))
    print(f"   sets: {', '.join(sorted({ph['set'] for ph in photos}))}")
    if any(ph["seed"] not in CALIBRATION_SEEDS for ph in photos) and not args.validate:
        raise SystemExit("reporting seeds in the dump: use --validate --threshold T")
    report(photos, args.threshold if args.validate else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
