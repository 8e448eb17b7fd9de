"""Graph alternatives for ONNX Runtime on CPU, each timed in isolation on DeiT-B shapes (batch 16,
197 tokens, width 768): what the export uses against what was tried instead.

Backs the "tried and dropped" list in benchmarks/results/ort_cpu/report.md. Each case builds two
or more tiny ONNX graphs computing the same function, checks that they agree, and times them
interleaved in one process (sessions stop spinning after a run). Writes
benchmarks/results/ort_alternatives.{json,md}:

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/ort_alternatives.py [--iters 30]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spvit_deploy._io import write_json, write_text
from spvit_deploy.host import environment, wait_for_quiet
from spvit_deploy.export.ort import ort_session

OUT = Path(__file__).parent / "results"
B, N, C, H, D, HID = 16, 197, 768, 12, 64, 1345  # DeiT-B tokens; 1345: a published FFN width
RNG = np.random.default_rng(0)


def _arr(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


def graph(nodes: list[Any], inputs: dict[str, list[Any]], inits: dict[str, np.ndarray], opset: int = 18,
          ms: bool = False) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in inputs.items()],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(g, opset_imports=ops)


def n(op: str, ins: list[str], out: str, **kw: Any) -> Any:
    domain = kw.pop("domain", "")
    return helper.make_node(op, ins, [out], domain=domain, **kw)


# ------------------------------------------------------------------------------ cases
# each returns ({label: model}, feed); the first label is what the export emits


def case_final_norm() -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    """Last residual (fc2 bias + Add) and the final LayerNorm, then class-token pooling: the norm on the
    class token only (the export), or on every token before pooling (timm's order), which ORT fuses
    with the Adds into SkipLayerNormalization."""
    inits = {"g": _arr(C), "b": _arr(C), "bias": _arr(C), "i0": _i64(0), "i1": _i64(1), "ax1": _i64(1)}
    ins = {"x": ["B", N, C], "r": ["B", N, C]}
    residual = [n("Add", ["r", "bias"], "rb"), n("Add", ["x", "rb"], "s")]
    ours = residual + [n("Slice", ["s", "i0", "i1", "ax1"], "cls"),
                       n("LayerNormalization", ["cls", "g", "b"], "o", axis=-1, epsilon=1e-6)]
    timm = residual + [n("LayerNormalization", ["s", "g", "b"], "ln", axis=-1, epsilon=1e-6),
                       n("Slice", ["ln", "i0", "i1", "ax1"], "o")]
    return ({"norm on the class token after pooling": graph(ours, ins, inits),
             "norm on every token, then pooling (ORT: SkipLayerNormalization)": graph(timm, ins, inits)},
            {"x": _arr(B, N, C), "r": _arr(B, N, C)})


def case_bias() -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    """A projection's bias: MatMul + Add on (B, N, C) tokens, or Gemm on 2-D tokens (bias fused)."""
    inits = {"W": _arr(C, C, scale=0.03), "b": _arr(C), "s2": _i64(-1, C), "s3": _i64(-1, N, C)}
    ins = {"x": ["B", N, C]}
    mm = [n("MatMul", ["x", "W"], "m"), n("Add", ["m", "b"], "o")]
    gemm = [n("Reshape", ["x", "s2"], "x2"), n("Gemm", ["x2", "W", "b"], "y2"), n("Reshape", ["y2", "s3"], "o")]
    return {"MatMul + Add": graph(mm, ins, inits), "Reshape + Gemm (bias fused) + Reshape": graph(gemm, ins, inits)}, {
        "x": _arr(B, N, C)}


def case_residual() -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    """fc2 + bias + residual: two Adds, or one three-input Sum."""
    inits = {"W": _arr(HID, C, scale=0.03), "b": _arr(C)}
    ins = {"x": ["B", N, C], "h": ["B", N, HID]}
    adds = [n("MatMul", ["h", "W"], "m"), n("Add", ["m", "b"], "mb"), n("Add", ["x", "mb"], "o")]
    summ = [n("MatMul", ["h", "W"], "m"), n("Sum", ["x", "m", "b"], "o")]
    return {"MatMul + Add + Add": graph(adds, ins, inits), "MatMul + Sum(x, m, b)": graph(summ, ins, inits)}, {
        "x": _arr(B, N, C), "h": _arr(B, N, HID)}


def case_class_token() -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    """A conv block's output: projection, then the class token's row put back (Concat or ScatterND)."""
    inits = {"W": _arr(D, C, scale=0.1), "bb": _arr(C), "pads": _i64(0, 1, 0, 0, 0, 0), "ax1": _i64(1),
             "idx": np.array([[b, 0] for b in range(B)], np.int64)}
    ins = {"x": ["B", N, C], "y": ["B", N - 1, D], "cls": ["B", 1, C]}
    cat = [n("MatMul", ["y", "W"], "z0"), n("Add", ["z0", "bb"], "z"), n("Concat", ["cls", "z"], "br", axis=1),
           n("Add", ["x", "br"], "o")]
    scat = [n("Pad", ["y", "pads"], "yp"), n("MatMul", ["yp", "W"], "z0"), n("Add", ["z0", "bb"], "z"),
            n("Squeeze", ["cls", "ax1"], "c2"), n("ScatterND", ["z", "idx", "c2"], "br"), n("Add", ["x", "br"], "o")]
    return {"Concat": graph(cat, ins, inits), "Pad + ScatterND": graph(scat, ins, inits)}, {
        "x": _arr(B, N, C), "y": _arr(B, N - 1, D), "cls": _arr(B, 1, C)}


def case_attention() -> tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]:
    """Attention from (B, N, C) q, k, v: the decomposition the export emits (opset 18), ONNX's
    opset-23 Attention op, ORT's MultiHeadAttention contrib op."""
    inits = {"shp": _i64(0, 0, H, D), "oshp": _i64(0, 0, C), "sc": np.array(D ** -0.5, np.float32)}
    ins = {"q": ["B", N, C], "k": ["B", N, C], "v": ["B", N, C]}
    dec = [n("Reshape", ["q", "shp"], "q4"), n("Transpose", ["q4"], "qt", perm=[0, 2, 1, 3]),
           n("Reshape", ["k", "shp"], "k4"), n("Transpose", ["k4"], "kt", perm=[0, 2, 3, 1]),
           n("Reshape", ["v", "shp"], "v4"), n("Transpose", ["v4"], "vt", perm=[0, 2, 1, 3]),
           n("Mul", ["qt", "sc"], "qs"), n("MatMul", ["qs", "kt"], "s"), n("Softmax", ["s"], "p", axis=-1),
           n("MatMul", ["p", "vt"], "a"), n("Transpose", ["a"], "at", perm=[0, 2, 1, 3]),
           n("Reshape", ["at", "oshp"], "o")]
    return ({"MatMul + Softmax + MatMul + transposes": graph(dec, ins, inits),
             "Attention (ONNX opset 23)": graph([n("Attention", ["q", "k", "v"], "o", q_num_heads=H, kv_num_heads=H)],
                                                ins, {}, opset=23),
             "MultiHeadAttention (ORT contrib)": graph(
                 [n("MultiHeadAttention", ["q", "k", "v"], "o", domain="com.microsoft", num_heads=H)], ins, {},
                 ms=True)},
            {k: _arr(B, N, C) for k in "qkv"})


CASES: dict[str, Callable[[], tuple[dict[str, onnx.ModelProto], dict[str, np.ndarray]]]] = {
    "final norm": case_final_norm, "projection bias": case_bias, "fc2 bias + residual": case_residual,
    "conv block class token": case_class_token, "attention": case_attention,
}


def run_case(models: dict[str, onnx.ModelProto], feed: dict[str, np.ndarray], iters: int, threads: int,
             tmp: Path) -> list[dict[str, Any]]:
    sessions = {}
    for i, (label, m) in enumerate(models.items()):
        p = tmp / f"{i}.onnx"
        onnx.save(m, str(p))
        sessions[label] = ort_session(p, threads=threads)
    outs = {k: s.run(None, feed)[0] for k, s in sessions.items()}
    first = next(iter(outs))
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(iters):
        for k in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
            t = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - t)
    base = float(np.median(times[first]))
    return [{"graph": k, "p50_ms": round(float(np.median(v)) * 1e3, 3), "min_ms": round(min(v) * 1e3, 3),
             "vs_first": round(float(np.median(v)) / base, 3),
             "max_abs_diff_vs_first": float(np.abs(outs[k] - outs[first]).max())} for k, v in times.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    wait_for_quiet()
    results = {}
    with tempfile.TemporaryDirectory(prefix="spvit-alt-") as tmp:
        for name, make in CASES.items():
            models, feed = make()
            results[name] = run_case(models, feed, args.iters, args.threads, Path(tmp))
            print(name, [(r["graph"], r["p50_ms"]) for r in results[name]], flush=True)
    env = environment(args.threads)
    doc = {"shapes": {"batch": B, "tokens": N, "width": C, "heads": H, "ffn_width": HID}, "iters": args.iters,
           "environment": env, "cases": results}
    lines = ["# Graph alternatives on ONNX Runtime (CPU), timed in isolation", "",
             f"DeiT-B shapes: batch {B}, {N} tokens, width {C}, {H} heads (FFN width {HID} where used); "
             f"{args.iters} interleaved runs per graph, {args.threads} threads; the first row of each case is what "
             "`spvit-deploy export` emits. Written by `benchmarks/ort_alternatives.py`.", "",
             f"- Machine: {env.get('cpu_model')}; onnxruntime {env.get('versions', {}).get('onnxruntime')}; "
             f"{env.get('date_utc')}", ""]
    for name, rows in results.items():
        lines += [f"## {name}", "", "| graph | p50 ms | min ms | p50 vs first | max abs diff vs first |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['graph']} | {r['p50_ms']:.2f} | {r['min_ms']:.2f} | {r['vs_first']:.2f}x | "
                  f"{r['max_abs_diff_vs_first']:.1e} |" for r in rows]
        lines.append("")
    out = Path(args.out)
    write_json(out / "ort_alternatives.json", doc)
    write_text(out / "ort_alternatives.md", "\n".join(lines))


if __name__ == "__main__":
    main()
