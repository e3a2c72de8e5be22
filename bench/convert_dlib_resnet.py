#!/usr/bin/env python3
"""Make models/dlib_face_recognition_resnet_model_v1.onnx from dlib's .dat (same descriptors).

    .venv/bin/python bench/convert_dlib_resnet.py            # reads face_recognition_models' .dat
    .venv/bin/python bench/convert_dlib_resnet.py --dat X.dat --out Y.onnx

The .dat is dlib's own serialization of the face descriptor network (`anet_type` of dlib's
dnn_face_recognition_ex.cpp, a ResNet-29 on 150x150 RGB chips). This script reads it in pure
Python and writes the same network as an ONNX graph (float32, dynamic batch):

    input  "chips"        uint8 (N,150,150,3): RGB chips as dlib.get_face_chip(img, shape, 150, 0.25) gives them
    output "descriptors"  float32 (N,128)

dlib details the graph reproduces (checked in the dlib 20.0.1 sources):
* input: (pixel - mean RGB) / 256, the means read from the file (122.782, 117.001, 104.298);
* a convolution or pooling with stride 1 pads size/2, with any other stride it pads 0
  (7x7/2 on 150 -> 72, max pool 3x3/2 -> 35, 3x3/2 convolutions: 35 -> 17 -> 8 -> 3 -> 1);
* residual_down's shortcut is a 2x2/2 average pool of the block input (35 -> 17 -> 8 -> 4 -> 2);
* add_prev adds tensors of different sizes: the output has the larger channel count and spatial
  size, values missing from the smaller tensor count as zero (here: the shortcut has half the
  channels, and at the last two levels the convolution branch is smaller than the shortcut:
  3x3 vs 4x4 and 1x1 vs 2x2) -> zero Pad then Add;
* affine layers (batch norm frozen to scale/shift) are folded into the preceding convolution.

The source .dat's sha256 is stored in metadata_props["dlib_dat_sha256"]; photocheck's engine
refuses an .onnx whose value differs from the installed .dat's. The output is deterministic (same
.dat, same onnx package: same bytes). Check it against dlib with `bench/encoder_onnx.py verify`.

Serialization format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h):
* integers: one control byte (low 4 bits: byte count, bit 0x80: negative) + that many bytes,
  little endian;
* floats/doubles: two such integers, mantissa and exponent (value = mantissa * 2**exponent);
* strings: length (integer) + bytes; bools: the character '1' or '0';
* tensors: version integer 2, four integers (num_samples, k, nr, nc), then raw little-endian
  float32 values; alias tensors: version 1 + four integers, no data;
* a network is nested: add_loss_layer = version, loss details, subnet; add_layer = version,
  subnet, layer details, flags, cached tensors; tag/skip layers = version, subnet. So the file
  holds every layer's version first (outermost first), then the input layer, then each layer's
  details from the input outwards. Each layer's details start with its own version string.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "models" / "dlib_face_recognition_resnet_model_v1.onnx"
CHIP = 150

# --------------------------------------------------------------------------- the architecture

# The network from the input to the loss, as dlib's template nesting applies it. Each entry is
# (wrapper, details): wrapper is "layer" (add_layer: has details), "tag" or "skip" (no details).


def _block(n: int, stride: int) -> list[tuple]:
    """dlib's `block`: con 3x3/stride -> affine -> relu -> con 3x3/1 -> affine."""
    return [("layer", ("con", n, 3, stride)), ("layer", ("affine",)), ("layer", ("relu",)),
            ("layer", ("con", n, 3, 1)), ("layer", ("affine",))]


def _ares(n: int) -> list[tuple]:
    """relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>"""
    return [("tag", 1), *_block(n, 1), ("layer", ("add_prev", 1)), ("layer", ("relu",))]


def _ares_down(n: int) -> list[tuple]:
    """relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>"""
    return [("tag", 1), *_block(n, 2), ("tag", 2), ("skip", 1), ("layer", ("avg_pool", 2, 2)),
            ("layer", ("add_prev", 2)), ("layer", ("relu",))]


def architecture() -> list[tuple]:
    arch = [("layer", ("con", 32, 7, 2)), ("layer", ("affine",)), ("layer", ("relu",)),
            ("layer", ("max_pool", 3, 2))]
    arch += _ares(32) * 3                                  # alevel4
    arch += _ares_down(64) + _ares(64) * 3                 # alevel3
    arch += _ares_down(128) + _ares(128) * 2               # alevel2
    arch += _ares_down(256) + _ares(256) * 2               # alevel1
    arch += _ares_down(256)                                # alevel0
    arch += [("layer", ("avg_pool_everything",)), ("layer", ("fc", 128))]
    return arch


# --------------------------------------------------------------------------- the .dat reader

class DlibReader:
    def __init__(self, data: bytes):
        self.b = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.b):
            raise ValueError(f"unexpected end of file at byte {self.pos}")
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8:
            raise ValueError(f"bad integer control byte {ctrl:#x} at byte {self.pos - 1}")
        v = int.from_bytes(self._take(size), "little")
        return -v if ctrl & 0x80 else v

    def float(self) -> float:
        if self.b[self.pos] & 0x70:
            raise ValueError(f"old ASCII float format at byte {self.pos} (not supported)")
        mantissa, exponent = self.int(), self.int()
        if exponent >= 32000:
            return {32000: float("inf"), 32001: float("-inf")}.get(exponent, float("nan"))
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("latin-1")

    def bool(self) -> bool:
        ch = bytes(self._take(1))
        if ch not in (b"0", b"1"):
            raise ValueError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        return np.frombuffer(self._take(4 * n), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))

    def expect_int(self, want: int | tuple, what: str) -> int:
        v = self.int()
        if v != want and not (isinstance(want, tuple) and v in want):
            raise ValueError(f"{what}: expected {want}, found {v} (byte {self.pos})")
        return v

    def expect_string(self, want: str | tuple, what: str) -> str:
        v = self.string()
        if v != want and not (isinstance(want, tuple) and v in want):
            raise ValueError(f"{what}: expected {want!r}, found {v!r} (byte {self.pos})")
        return v


@dataclass
class Layer:
    kind: str                   # con, affine, relu, max_pool, avg_pool, add_prev, avg_pool_everything, fc
    args: tuple
    params: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    mean_rgb: tuple[float, float, float]
    layers: list[Layer]         # input -> output, including tag / skip markers


def _read_details(r: DlibReader, kind: str, args: tuple) -> dict:
    if kind == "con":
        n, size, stride = args
        ver = r.expect_string(("con_4", "con_5", "con_6"), "con_ version")
        params = r.tensor()
        num_filters = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        pad = 0 if stride != 1 else size // 2
        if (num_filters, nr, nc, sy, sx, py, px) != (n, size, size, stride, stride, pad, pad):
            raise ValueError(f"con_: expected {n} filters {size}x{size}/{stride} pad {pad}, found "
                             f"{num_filters} {nr}x{nc}/{sy},{sx} pad {py},{px}")
        fshape = r.alias_tensor()
        bshape = r.alias_tensor()
        for _ in range(4):      # learning-rate / weight-decay multipliers
            r.float()
        use_bias = r.bool() if ver in ("con_5", "con_6") else True
        if ver == "con_6" and r.bool():
            raise ValueError("con_ with a fused relu: not expected in this network")
        nw = int(np.prod(fshape))
        w = params.reshape(-1)[:nw].reshape(fshape)
        b = params.reshape(-1)[nw:nw + int(np.prod(bshape))].reshape(-1) if use_bias else np.zeros(n, np.float32)
        if w.shape[0] != n or b.shape != (n,):
            raise ValueError(f"con_: weight shapes {w.shape} {b.shape}")
        return {"w": w, "b": b}
    if kind == "affine":
        # (A net saved during training would hold "bn_con2" here: not supported, the .dat holds affine_.)
        ver = r.expect_string(("affine_", "affine_2"), "affine_ version")
        params = r.tensor().reshape(-1)
        gshape = r.alias_tensor()
        r.alias_tensor()                        # beta: same shape, right after gamma
        mode = r.int()
        if mode != 0:                           # CONV_MODE (one scale per channel) is 0
            raise ValueError(f"affine_: expected CONV_MODE, found mode {mode}")
        if ver == "affine_2" and r.bool():
            raise ValueError("affine_ disabled: not expected in this network")
        k = int(np.prod(gshape))
        return {"gamma": params[:k].copy(), "beta": params[k:2 * k].copy()}
    if kind == "relu":
        ver = r.expect_string(("relu_", "relu_2"), "relu_ version")
        if ver == "relu_2" and r.bool():
            raise ValueError("relu_ disabled: not expected in this network")
        return {}
    if kind in ("max_pool", "avg_pool", "avg_pool_everything"):
        name = "max_pool_2" if kind == "max_pool" else "avg_pool_2"
        r.expect_string(name, f"{kind} version")
        vals = tuple(r.int() for _ in range(6))     # nr, nc, stride_y, stride_x, padding_y, padding_x
        want = (0, 0, 1, 1, 0, 0) if kind == "avg_pool_everything" else (args[0], args[0], args[1], args[1], 0, 0)
        if vals != want:
            raise ValueError(f"{kind}: expected {want}, found {vals}")
        return {}
    if kind == "add_prev":
        r.expect_string("add_prev_", "add_prev_ version")
        return {}
    if kind == "fc":
        ver = r.expect_string(("fc_2", "fc_3"), "fc_ version")
        n_out, n_in = r.int(), r.int()
        params = r.tensor().reshape(-1)
        wshape = r.alias_tensor()
        r.alias_tensor()                        # biases
        if r.int() != 1:                        # FC_NO_BIAS
            raise ValueError("fc_: expected FC_NO_BIAS")
        for _ in range(4):
            r.float()
        if ver == "fc_3":
            r.bool()                            # use_bias (no biases either way)
        if (n_out, wshape[:2]) != (args[0], (n_in, n_out)):
            raise ValueError(f"fc_: expected {args[0]} outputs, found {n_out} ({wshape})")
        return {"w": params[:n_in * n_out].reshape(n_in, n_out).copy()}
    raise AssertionError(kind)


def read_dlib_resnet(data: bytes) -> DlibNet:
    """Parse dlib_face_recognition_resnet_model_v1.dat (anet_type) into its weights."""
    r = DlibReader(data)
    arch = architecture()
    # add_loss_layer: version, loss_metric_ details, then the subnet.
    r.expect_int(1, "add_loss_layer version")
    if r.expect_string(("loss_metric_", "loss_metric_2"), "loss version") == "loss_metric_2":
        r.float()
        r.float()                               # margin, dist_thresh (training only)
    # Versions of every wrapper, outermost (fc) first; the innermost add_layer holds the input layer.
    versions: list[int | None] = [None] * len(arch)
    for i in reversed(range(len(arch))):
        wrapper = arch[i][0]
        if wrapper != "layer":
            r.expect_int(1, f"add_{wrapper}_layer version")
        elif i == 0:            # the innermost add_layer holds the input layer: versions 2..3
            versions[i] = r.expect_int((2, 3), "input add_layer version")
        else:
            versions[i] = r.expect_int((1, 2), "add_layer version")
    r.expect_string("input_rgb_image_sized", "input layer version")
    mean_rgb = (r.float(), r.float(), r.float())
    if (r.int(), r.int()) != (CHIP, CHIP):
        raise ValueError("input layer: expected 150x150 chips")
    layers = []
    for i, (wrapper, spec) in enumerate(arch):
        if wrapper != "layer":
            layers.append(Layer(wrapper, (spec,)))
            continue
        kind, *args = spec
        params = _read_details(r, kind, tuple(args))
        for _ in range(3):                      # setup called, gradient stale, output disabled
            r.bool()
        r.tensor()
        r.tensor()                              # x_grad, cached_output
        if i == 0:                              # the input add_layer: grad_final (+ sample expansion in v3)
            r.tensor()
            if versions[0] == 3:
                r.int()
        elif versions[i] == 2:
            r.tensor()                          # params_grad
        layers.append(Layer(kind, tuple(args), params))
    if r.pos != len(r.b):
        raise ValueError(f"{len(r.b) - r.pos} bytes left after the network")
    return DlibNet(mean_rgb=mean_rgb, layers=layers)


# --------------------------------------------------------------------------- the ONNX graph

def build_onnx(net: DlibNet, *, dat_sha256: str | None = None):
    """The ONNX model of `net`: uint8 NHWC chips in, float32 (N,128) descriptors out.

    Shapes are tracked here (C, H, W per tensor) to know where add_prev needs zero padding."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = iter(range(10**6))

    def name(prefix: str) -> str:
        return f"{prefix}_{next(counter)}"

    def const(arr: np.ndarray, prefix: str) -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), n))
        return n

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # Input: (pixel - mean) / 256, NHWC uint8 -> NCHW float32.
    x = node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = node("Sub", [x, const(np.array(net.mean_rgb, np.float32), "mean_rgb")])
    x = node("Mul", [x, const(np.array(1 / 256, np.float32), "inv256")])
    x = node("Transpose", [x], perm=[0, 3, 1, 2])
    shape = (3, CHIP, CHIP)

    tags: dict[int, tuple[str, tuple]] = {}
    layers = net.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        k = layer.kind
        if k == "tag":
            tags[layer.args[0]] = (x, shape)
        elif k == "skip":
            x, shape = tags[layer.args[0]]
        elif k == "con":
            n, size, stride = layer.args
            pad = 0 if stride != 1 else size // 2
            w = layer.params["w"].astype(np.float64)
            b = layer.params["b"].astype(np.float64)
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if nxt is not None and nxt.kind == "affine":   # fold the affine layer into the conv
                g = nxt.params["gamma"].astype(np.float64)
                w = w * g[:, None, None, None]
                b = b * g + nxt.params["beta"].astype(np.float64)
                i += 1
            x = node("Conv", [x, const(w.astype(np.float32), "w"), const(b.astype(np.float32), "b")],
                     kernel_shape=[size, size], strides=[stride, stride], pads=[pad] * 4)
            shape = (n, (shape[1] + 2 * pad - size) // stride + 1, (shape[2] + 2 * pad - size) // stride + 1)
        elif k == "affine":
            c = shape[0]
            x = node("Mul", [x, const(layer.params["gamma"].reshape(1, c, 1, 1), "gamma")])
            x = node("Add", [x, const(layer.params["beta"].reshape(1, c, 1, 1), "beta")])
        elif k == "relu":
            x = node("Relu", [x])
        elif k in ("max_pool", "avg_pool"):
            size, stride = layer.args
            x = node("MaxPool" if k == "max_pool" else "AveragePool", [x],
                     kernel_shape=[size, size], strides=[stride, stride])
            shape = (shape[0], (shape[1] - size) // stride + 1, (shape[2] - size) // stride + 1)
        elif k == "add_prev":
            y, yshape = tags[layer.args[0]]
            out = tuple(max(a, b) for a, b in zip(shape, yshape))
            parts = []
            for t, s in ((x, shape), (y, yshape)):
                if s != out:            # missing values count as zero: pad at the end of C, H, W
                    pads = [0, 0, 0, 0, 0, out[0] - s[0], out[1] - s[1], out[2] - s[2]]
                    t = node("Pad", [t, const(np.array(pads, np.int64), "pads")])
                parts.append(t)
            x = node("Add", parts)
            shape = out
        elif k == "avg_pool_everything":
            x = node("GlobalAveragePool", [x])
            x = node("Flatten", [x], axis=1)
            shape = (shape[0],)
        elif k == "fc":
            x = node("MatMul", [x, const(layer.params["w"], "fc_w")])
            shape = (layer.args[0],)
        else:
            raise AssertionError(k)
        i += 1
    nodes[-1].output[0] = "descriptors"

    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["N", CHIP, CHIP, 3])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", shape[0]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="photocheck bench/convert_dlib_resnet.py")
    model.ir_version = 8
    model.doc_string = ("dlib's face descriptor ResNet (dlib_face_recognition_resnet_model_v1.dat, "
                        "public domain, davisking/dlib-models), converted to ONNX")
    if dat_sha256:
        helper.set_model_props(model, {"dlib_dat_sha256": dat_sha256, "source": "dlib_face_recognition_resnet_model_v1.dat"})
    onnx.checker.check_model(model)
    return model


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def default_dat() -> Path:
    import importlib.metadata as md

    return Path(str(md.distribution("face_recognition_models").locate_file(
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dat", type=Path, default=None, help="dlib .dat (default: face_recognition_models')")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    dat = a.dat or default_dat()
    net = read_dlib_resnet(dat.read_bytes())
    model = build_onnx(net, dat_sha256=sha256_file(dat))
    a.out.write_bytes(model.SerializeToString())
    print(f"{dat} -> {a.out} ({a.out.stat().st_size} bytes, sha256 {sha256_file(a.out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
