#!/usr/bin/env python3
"""Calibrate photocheck's thresholds on generated event sets (rerunnable).

    .venv/bin/python bench/calibrate.py                   # seeds 11..16, sets cached in /tmp
    .venv/bin/python bench/calibrate.py --seeds 11 12 --photos 16 --workers 2

For each CALIBRATION seed it generates an event set with ../shared/tools/make_event_set.py
(if not already in --cache), runs the engine on every photo, matches detections to the truth
boxes (IoU >= 0.3), encodes every detected face and every roster reference photo, and prints:
  * detection recall by face-size bucket, false detections, timing
  * for each detected face, the min distance to each listed student's references, split into
    same-person / different-person pairs, by size bucket
  * sharpness by size bucket
  * a per-photo simulation of the verdict rules with the thresholds in models/thresholds.toml
    (or --block/--review/--min-face-px/--min-sharpness/--min-weak-sharpness overrides), by
    --degrade condition, and the trade-off of [quality] min_weak_sharpness: missed photos vs review

Only seeds 11-19 and 41-49 are calibration seeds; the rest are for reporting and refused here.

Degraded sets: --degrade motion:5,motion:9,... --face-px 36:64 --seeds 41 42 (see models/README.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

BUCKETS = [(40, 60), (60, 100), (100, 200), (200, 10**9)]
# (name, make_event_set extra args): mostly small faces, plus one set with the tool's default range.
VARIANTS = {
    "small": ["--face-px", "40:300"],
    "default": [],  # 48:420
}
# Calibration seeds: 11-19 (clean sets) and 41-49 (degraded sets, --degrade). Every other seed is
# for reporting (bench/accuracy.py, bench/conditions.py, the tests) and is refused here.
CALIBRATION_SEEDS = set(range(11, 20)) | set(range(41, 50))


def bucket(px: float) -> str:
    for lo, hi in BUCKETS:
        if lo <= px < hi:
            return f"{lo}-{hi}" if hi < 10**9 else f"{lo}+"
    return f"<{BUCKETS[0][0]}"


BUCKET_NAMES = [f"<{BUCKETS[0][0]}"] + [f"{lo}-{hi}" if hi < 10**9 else f"{lo}+" for lo, hi in BUCKETS]


def make_set(seed: int, variant: str, photos: int, cache: Path, extra: list[str] = ()) -> Path:
    """The event set for one calibration seed (generated once into `cache`). `extra`: more
    make_event_set options (e.g. --degrade), which also replace the variant's own --face-px."""
    tag = "".join(a.strip("-").replace(":", "").replace(",", "") for a in extra)
    out = cache / (f"{variant}_s{seed}_n{photos}" + (f"_{tag}" if tag else ""))
    if (out / "truth.json").is_file():
        return out
    base = [] if "--face-px" in extra else VARIANTS[variant]
    cmd = [sys.executable, str(SHARED / "tools" / "make_event_set.py"),
           "--people", str(SHARED / "faces" / "people"), "--backdrops", str(SHARED / "faces" / "nofaces"),
           "--photos", str(photos), "--seed", str(seed), "--out", str(out), *base, *extra]
    print("generating:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def load_upright(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


_ENGINE = None


_OVERRIDES: dict = {}


def _init(overrides: dict) -> None:
    _OVERRIDES.update(overrides)


def _engine():
    """Engine with [detector] settings from thresholds.toml, optionally overridden (--set)."""
    global _ENGINE
    if _ENGINE is None:
        import dataclasses

        from photocheck.engine import FaceEngine
        from photocheck.thresholds import load_thresholds
        _ENGINE = FaceEngine(dataclasses.replace(load_thresholds().detector, **_OVERRIDES))
    return _ENGINE


def process_photo(args: tuple[str, list[dict]]) -> dict:
    """Detect + encode one photo; match detections to truth. Runs in a worker process."""
    from photocheck.engine import box_iou

    path, truth_people = args
    eng = _engine()
    t0 = time.perf_counter()
    rgb = load_upright(Path(path))
    t1 = time.perf_counter()
    dets = eng.detect(rgb)
    t2 = time.perf_counter()
    encs = eng.encode(rgb, dets)
    t3 = time.perf_counter()
    # Greedy matching by IoU (best pairs first).
    pairs = sorted(((box_iou(tuple(p["box"]), d.box), i, j) for i, p in enumerate(truth_people)
                    for j, d in enumerate(dets)), reverse=True)
    t_used, d_used, match = set(), set(), {}
    for iou, i, j in pairs:
        if iou < 0.3:
            break
        if i in t_used or j in d_used:
            continue
        t_used.add(i), d_used.add(j)
        match[j] = (i, iou)
    faces = []
    for j, d in enumerate(dets):
        i, iou = match.get(j, (None, 0.0))
        p = truth_people[i] if i is not None else None
        faces.append({"box": d.box, "width": d.width, "score": d.score, "sharpness": d.sharpness,
                      "quality": dataclasses.asdict(d.quality) if d.quality else None,
                      "truth": i, "iou": iou, "student_id": p["student_id"] if p else None,
                      "no_consent": p["no_consent"] if p else False,
                      "truth_px": p["face_px"] if p else None, "enc": encs[j].tolist()})
    missed = [dict(p, truth=i) for i, p in enumerate(truth_people) if i not in t_used]
    return {"path": path, "size": rgb.shape[:2], "faces": faces, "missed": missed,
            "t_decode": t1 - t0, "t_detect": t2 - t1, "t_encode": t3 - t2}


def reference_face(eng, rgb: np.ndarray):
    """The face of a reference photo as enrolment sees it (strong detections only), the widest if
    there are several; None if there is none."""
    return max(eng.detect(rgb, strong_only=True), key=lambda d: d.width, default=None)


def encode_references(set_dir: Path) -> dict[str, list[np.ndarray]]:
    """Same rule enrolment will use: the largest detected face of each reference photo."""
    eng = _engine()
    refs: dict[str, list[np.ndarray]] = {}
    for sdir in sorted((set_dir / "roster" / "photos").iterdir()):
        for f in sorted(sdir.glob("*.jpg")):
            rgb = load_upright(f)
            d = reference_face(eng, rgb)
            if d is None:
                print(f"warning: no face in reference {f}", file=sys.stderr)
                continue
            refs.setdefault(sdir.name, []).append(eng.encode(rgb, [d])[0])
    return refs


def simulate(all_photos: list[dict], block: float, review: float, rules, review_small: float | None = None) -> dict:
    """Photo verdicts by screening's rules (distance bands + screening.quality_problem) from a dump.
    `review_small`: the review distance of faces screening.needs_margin() names (None: `review`)."""
    from photocheck.engine import FaceQuality
    from photocheck.screening import needs_margin, quality_problem

    out = {"blocked": 0, "review": 0, "clear": 0, "false_block": 0, "listed_clear": 0, "review_nl": 0,
           "listed_faces": 0, "listed_ident": 0, "reasons": {"uncertain": 0, "quality": 0}, "by_condition": {}}
    for ph in all_photos:
        v = "clear"
        has_listed = any(p.get("no_consent") for p in
                         [f for f in ph["faces"] if f["truth"] is not None] + ph["missed"])
        wrong_block = nl_review = False
        for f in ph["faces"]:
            dmin_sid = min(f["dist"], key=f["dist"].get) if f["dist"] else None
            dmin = f["dist"][dmin_sid] if dmin_sid else 9.0
            q = FaceQuality(**{k: f["quality"][k] for k in FaceQuality.__dataclass_fields__}) if f.get("quality") else None
            poor = quality_problem(f["width"], f["sharpness"], q, rules) is not None
            poor |= needs_margin(f["width"], q, rules) is not None and dmin <= (review_small or review)
            if f["no_consent"]:
                out["listed_faces"] += 1
                out["listed_ident"] += f["dist"].get(f["student_id"], 9.0) <= block
            elif dmin > block and (dmin <= review or poor):
                nl_review = True
            if dmin <= block:
                v = "blocked"
                wrong_block |= f["student_id"] != dmin_sid
            elif v != "blocked" and (dmin <= review or poor):
                v = "review"
                out["reasons"]["uncertain" if dmin <= review else "quality"] += 1
        out["listed_faces"] += sum(bool(m["no_consent"]) for m in ph["missed"])
        out[v] += 1
        out["review_nl"] += nl_review
        # A false block = photo blocked while no listed student is in it, or blocked for the wrong one only.
        out["false_block"] += v == "blocked" and (not has_listed or wrong_block and not any(
            f["no_consent"] and f["dist"].get(f["student_id"], 9) <= block for f in ph["faces"]))
        out["listed_clear"] += v == "clear" and has_listed
        c = out["by_condition"].setdefault(ph.get("degradation", "none"), {"n": 0, "review": 0, "missed": 0})
        c["n"] += 1
        c["review"] += v == "review"
        c["missed"] += v == "clear" and has_listed
    return out


def pct(a, q):
    return float(np.percentile(a, q)) if len(a) else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14, 15, 16])
    ap.add_argument("--default-variant-seeds", type=int, nargs="*", default=[15, 16],
                    help="seeds generated with the tool's default --face-px (48:420) instead of 40:300")
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--degrade", help="make_event_set --degrade conditions for every set, e.g. "
                                      "motion:5,motion:9,defocus:2,dark,jpeg:30,reshare:2048,gray,none")
    ap.add_argument("--face-px", help="make_event_set --face-px MIN:MAX for every set (instead of the variants')")
    ap.add_argument("--max-people", type=int, help="make_event_set --max-people for every set (its default: 8)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/photocheck-calib"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dump", type=Path, help="write all per-face results (with encodings) as JSON")
    ap.add_argument("--load", type=Path, help="re-analyse a --dump instead of running the engine")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a [detector] setting for this run, e.g. --set encode_face_px=0")
    ap.add_argument("--block", type=float)
    ap.add_argument("--review", type=float)
    ap.add_argument("--min-face-px", type=int)
    ap.add_argument("--min-sharpness", type=float)
    ap.add_argument("--min-weak-sharpness", type=float)
    ap.add_argument("--review-small", type=float, help="[match] review_distance_small override")
    args = ap.parse_args(argv)

    bad = [s for s in args.seeds if s not in CALIBRATION_SEEDS]
    if bad:
        ap.error(f"seeds {bad} are reserved for reporting; calibrate on 11..19 or 41..49")

    from photocheck.thresholds import load_thresholds
    th = load_thresholds()
    block = args.block if args.block is not None else th.match.block_distance
    review = args.review if args.review is not None else th.match.review_distance
    min_px = args.min_face_px if args.min_face_px is not None else th.quality.min_face_px
    min_sharp = args.min_sharpness if args.min_sharpness is not None else th.quality.min_sharpness

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        cur = getattr(th.detector, k)
        overrides[k] = (v.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(v)
    _init(overrides)

    sets = []
    all_photos = []
    if args.load:
        all_photos = json.loads(args.load.read_text())
        sets = sorted({Path(p["set"]) for p in all_photos})
    else:
        args.cache.mkdir(parents=True, exist_ok=True)
        extra = ((["--face-px", args.face_px] if args.face_px else []) + (["--degrade", args.degrade] if args.degrade else [])
                 + (["--max-people", str(args.max_people)] if args.max_people else []))
        sets = [make_set(s, "default" if s in args.default_variant_seeds else "small", args.photos, args.cache, extra)
                for s in args.seeds]
    with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(overrides,)) as pool:
        for sd in ([] if args.load else sets):
            truth = json.loads((sd / "truth.json").read_text())
            refs = encode_references(sd)
            jobs = [(str(sd / p["file"]), p["people"]) for p in truth["photos"]]
            for res, ph in zip(pool.map(process_photo, jobs), truth["photos"]):
                res["set"] = sd.name
                res["degradation"] = ph.get("degradation", "none")
                res["listed"] = truth["no_consent"]
                for f in res["faces"]:
                    e = np.asarray(f["enc"])
                    f["dist"] = {sid: float(min(np.linalg.norm(r - e) for r in rs)) for sid, rs in refs.items()}
                all_photos.append(res)
            missing_refs = set(truth["no_consent"]) - set(refs)
            if missing_refs:
                print(f"warning: {sd.name}: listed students without a usable reference: {missing_refs}")

    if args.dump and not args.load:
        args.dump.write_text(json.dumps(all_photos))

    # ---------------------------------------------------------------- detection
    print(f"\n== {len(sets)} sets, {len(all_photos)} photos: {', '.join(s.name for s in sets)}")
    print(f"detector overrides: {overrides or 'none'}")
    print(f"thresholds: block={block} review={review} min_face_px={min_px} min_sharpness={min_sharp}")
    found = {b: 0 for b in BUCKET_NAMES}
    total = {b: 0 for b in BUCKET_NAMES}
    false_dets = []
    ious = []
    for ph in all_photos:
        for f in ph["faces"]:
            if f["truth"] is None:
                false_dets.append(f)
            else:
                found[bucket(f["truth_px"])] += 1
                total[bucket(f["truth_px"])] += 1
                ious.append(f["iou"])
        for m in ph["missed"]:
            total[bucket(m["face_px"])] += 1
    print("\n-- detection recall by true face width (px)")
    for b in BUCKET_NAMES:
        if total[b]:
            print(f"  {b:>8}: {found[b]}/{total[b]} = {found[b] / total[b]:.3f}")
    print(f"  all     : {sum(found.values())}/{sum(total.values())}; mean IoU vs truth box {np.mean(ious):.3f}")
    print(f"  false detections: {len(false_dets)} in {len(all_photos)} photos; widths "
          f"{sorted(int(f['width']) for f in false_dets)}; scores {sorted(round(f['score'], 2) for f in false_dets)}")
    tsc = np.array([f["score"] for ph in all_photos for f in ph["faces"] if f["truth"] is not None])
    print(f"  score of true faces: min {tsc.min():.3f} p1 {pct(tsc, 1):.3f} p5 {pct(tsc, 5):.3f} median {pct(tsc, 50):.3f}")
    missed = [(ph["path"].split("/")[-1], m["face_px"], m["person"]) for ph in all_photos for m in ph["missed"]]
    if missed:
        print(f"  missed: {missed}")
    td = np.array([ph["t_detect"] for ph in all_photos])
    te = np.array([ph["t_encode"] for ph in all_photos])
    tdec = np.array([ph["t_decode"] for ph in all_photos])
    nf = np.array([len(ph["faces"]) for ph in all_photos])
    print(f"  time/photo ({args.workers} workers, 1 ORT thread each): decode {tdec.mean():.2f}s, detect "
          f"{td.mean():.2f}s (max {td.max():.2f}), encode {te.mean():.2f}s for {nf.mean():.1f} faces")

    # ---------------------------------------------------------------- distances
    same = {b: [] for b in BUCKET_NAMES}
    diff = {b: [] for b in BUCKET_NAMES}
    sharp = {b: [] for b in BUCKET_NAMES}
    for ph in all_photos:
        for f in ph["faces"]:
            b = bucket(f["width"])  # by *detected* width: that is what screening sees
            sharp[b].append(f["sharpness"])
            for sid, d in f["dist"].items():
                (same if f["student_id"] == sid else diff)[b].append(d)
    print("\n-- min distance to a listed student's references, by detected face width")
    print("   bucket    same-person: n  min   p50   p95   p99   max | diff-person: n  min   p1    p5")
    for b in BUCKET_NAMES:
        s, d = np.array(same[b]), np.array(diff[b])
        if len(s) or len(d):
            print(f"  {b:>8}  {len(s):4d} {pct(s, 0):.3f} {pct(s, 50):.3f} {pct(s, 95):.3f} {pct(s, 99):.3f} "
                  f"{pct(s, 100):.3f} | {len(d):4d} {pct(d, 0):.3f} {pct(d, 1):.3f} {pct(d, 5):.3f}")
    s_all = np.concatenate([np.array(v) for v in same.values()])
    d_all = np.concatenate([np.array(v) for v in diff.values()])
    print(f"       all  {len(s_all):4d} {pct(s_all, 0):.3f} {pct(s_all, 50):.3f} {pct(s_all, 95):.3f} "
          f"{pct(s_all, 99):.3f} {pct(s_all, 100):.3f} | {len(d_all):4d} {pct(d_all, 0):.3f} "
          f"{pct(d_all, 1):.3f} {pct(d_all, 5):.3f}")
    print("\n-- sharpness (Laplacian variance, 64x64 grey crop) by detected width: min p1 p5 p50")
    for b in BUCKET_NAMES:
        v = np.array(sharp[b])
        if len(v):
            print(f"  {b:>8}: n={len(v)} {pct(v, 0):.1f} {pct(v, 1):.1f} {pct(v, 5):.1f} {pct(v, 50):.1f}")

    # ---------------------------------------------------------------- verdict simulation
    rules = dataclasses.replace(th.quality, min_face_px=min_px, min_sharpness=min_sharp,
                                **({"min_weak_sharpness": args.min_weak_sharpness}
                                   if args.min_weak_sharpness is not None else {}))
    review_small = args.review_small if args.review_small is not None else th.match.review_distance_small
    sim = simulate(all_photos, block, review, rules, review_small)
    n = len(all_photos)
    print(f"\n-- per-photo simulation ({rules})")
    print(f"  blocked {sim['blocked']}, review {sim['review']} ({sim['review'] / n:.1%}), clear {sim['clear']} of {n}")
    print(f"  false blocks {sim['false_block']} ({sim['false_block'] / n:.1%}); photos with a listed student left "
          f"clear: {sim['listed_clear']}")
    # Blocks hide review cost (a blocked photo is not counted as review); in a real school few students
    # are listed, so also report: photos that would need review because of a NON-listed face alone.
    print(f"  photos needing review because of a non-listed face alone: {sim['review_nl']} ({sim['review_nl'] / n:.1%})")
    print(f"  listed faces identified (<= block): {sim['listed_ident']}/{sim['listed_faces']} "
          f"({sim['listed_ident'] / max(1, sim['listed_faces']):.1%}); review-face reasons {sim['reasons']}")
    conds = sorted({ph.get("degradation", "none") for ph in all_photos})
    if len(conds) > 1:
        print("  by condition (review / missed of photos): " + "; ".join(
            f"{c} {s['review']}/{s['missed']} of {s['n']}" for c, s in sim["by_condition"].items()))
    print("\n-- trade-off: small faces (under [quality] min_face_px always review; up to small_face_px they need "
          "the small_min_* gates and a distance above [match] review_distance_small)")
    print("   min_face_px  review_small  missed  review  review(non-listed face alone)")
    for floor in (36, 40, 44, rules.small_face_px):
        for rs in (review, 0.70, 0.74, 0.78):
            t = simulate(all_photos, block, review, dataclasses.replace(rules, min_face_px=floor), rs)
            print(f"   {floor:11d}  {rs:12.2f}  {t['listed_clear']:6d}  {t['review'] / n:6.1%}  {t['review_nl'] / n:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
