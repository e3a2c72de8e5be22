#!/usr/bin/env python3
"""Write models/centerface_int8_stem.onnx and models/centerface_int8_head.onnx.

    .venv/bin/python bench/split_centerface.py

The int8 CenterFace (models/centerface_int8.onnx) cut in two where the engine cuts it to run its
high-resolution stem on bands of rows (photocheck.centerface_graph.split_centerface, `[detector]
tile_rows`). Shipping the two parts means a scan worker loads them as they are instead of
importing the onnx package to cut the graph at every start (12 MB of each worker's memory).
Each part records the sha256 of the model it was cut from; the engine cuts the model itself when
that does not match (tests/test_detect_tiles.py checks the shipped parts are current). Re-run
after bench/quantize_centerface.py.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from photocheck.centerface_graph import split_centerface
    from photocheck.model_files import file_sha256, quantized_centerface_path, split_centerface_paths

    source = quantized_centerface_path()
    parts = split_centerface(source.read_bytes(), file_sha256(source))
    for path, data in zip(split_centerface_paths(), parts):
        path.write_bytes(data)
        print(f"{path}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
