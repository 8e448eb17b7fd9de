"""Where the time goes: ONNX Runtime's profiler, summed per kind of op.

`ort_op_profile("model.onnx", batch=16)` runs the graph a few times with profiling on and returns,
per category (linear layers, attention matmuls, Softmax, LayerNorm, ...), the milliseconds per run
its kernels took, and for the matmul categories the multiply-accumulates they did, so that a
report can show which costs shrink with the MACs and which do not. Profiling adds a little time
per node; use it to compare shares, and the benchmark for latency.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CATEGORIES = (
    ("linear layers (MatMul, Gemm)", "linear"),
    ("attention matmuls (q k^T, softmax v)", "attention"),
    ("Softmax", "softmax"),
    ("LayerNorm", "norm"),
    ("bias and residual Adds", "add"),
    ("GELU (with fc1's bias)", "gelu"),
    ("Conv (patch embedding, conv blocks)", "conv"),
    ("layout (Transpose, Split, Concat, Slice, reorders)", "layout"),
    ("other", "other"),
)
_LAYOUT = {"Transpose", "Split", "Concat", "Slice", "ReorderInput", "ReorderOutput", "Reshape", "Pad", "Gather",
           "Expand", "Squeeze", "Unsqueeze", "Shape"}


def _shapes(arg: Any) -> list[list[int]]:
    return [list(next(iter(d.values()))) for d in (arg or []) if d]


def categorize(op: str, inputs: list[list[int]]) -> str:
    if op in ("MatMul", "FusedMatMul", "Gemm"):
        return "attention" if len(inputs) >= 2 and len(inputs[0]) == 4 and len(inputs[1]) == 4 else "linear"
    if op in ("Softmax",):
        return "softmax"
    if "LayerNormalization" in op:
        return "norm"
    if op in ("Add", "Mul", "Sum", "Sub"):
        return "add"
    if "Gelu" in op or op == "Erf":
        return "gelu"
    if op in ("Conv", "FusedConv", "NchwcConv") or op.endswith("Conv"):
        return "conv"
    if op in _LAYOUT:
        return "layout"
    return "other"


def matmul_macs(op: str, inputs: list[list[int]], outputs: list[list[int]], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates of one MatMul / FusedMatMul / Gemm call: output elements x reduction length."""
    if op not in ("MatMul", "FusedMatMul", "Gemm") or not inputs or not outputs:
        return 0
    a = inputs[0]
    k = a[-2] if int(attrs.get("transA", 0)) else a[-1]
    return int(math.prod(outputs[0]) * k)


def ort_op_profile(path: str | os.PathLike[str], batch: int, input_shape: Sequence[int] = (3, 224, 224),
                   threads: int | None = None, runs: int = 3, seed: int = 0) -> dict[str, Any]:
    """Profile `runs` runs (after one warm-up) of an ONNX graph on ONNX Runtime's CPU provider.

    Returns {"run_ms": median run, "categories": {key: {"ms": per run, "macs": per run}}, "nodes": count}."""
    from ..export.ort import ort_session

    x = np.random.default_rng(seed).standard_normal((batch, *input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="spvit-profile-") as tmp:
        sess = ort_session(path, threads=threads, profile_prefix=str(Path(tmp) / "profile"))
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(runs + 1):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"][1:]  # no warm-up
    cats: dict[str, dict[str, float]] = {key: {"ms": 0.0, "macs": 0} for _, key in CATEGORIES}
    nodes = set()
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(t0 <= e["ts"] <= t1 for t0, t1 in spans):
            continue
        args = e.get("args", {})
        op = args.get("op_name", "")
        ins, outs = _shapes(args.get("input_type_shape")), _shapes(args.get("output_type_shape"))
        c = cats[categorize(op, ins)]
        c["ms"] += e["dur"] / 1e3 / len(spans)
        c["macs"] += matmul_macs(op, ins, outs, {}) / len(spans)
        nodes.add(e["name"])
    return {"run_ms": float(np.median([t1 - t0 for t0, t1 in spans]) / 1e3), "runs": len(spans), "batch": batch,
            "nodes": len(nodes), "categories": cats}
