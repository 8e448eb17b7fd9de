"""`verify` stages for the graphs `build-engine` receives, checked on CPU through `onnx.reference`, and
on TensorRT where it exists.

- `onnx-plugin`: export -> plugin pass; the plugin graph (numpy reference op) vs the plain graph,
  max abs diff <= 1e-4 (fp32), one plugin node per conv block, batch axis dynamic.
- `onnx-fp16`: export -> fp16 (and fp16 + plugins) vs the fp32 graph on real images (the demo's
  digits): cosine >= 0.999 and top-5 overlap >= 0.9; no fp16 LayerNorm/Softmax. Top-1 agreement is
  reported, not judged: random-weight logits are nearly tied, so one flipped argmax says nothing.
- `tensorrt`: an fp16 engine with plugins vs ONNX Runtime fp32 (max abs, cosine, top-5 overlap). Where
  TensorRT or a GPU is missing the stage is reported not ok, `skipped` with the reason: never a pass.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..verification import Check, VerifyContext, register_stage

PLUGIN_TOLERANCE = 1e-4
MIN_COSINE = 0.999
MIN_TOP5_OVERLAP = 0.9
IMAGES = 16


def topk_overlap(reference: np.ndarray, output: np.ndarray, k: int = 5) -> float:
    """Mean share of each sample's top-k classes (reference, last axis) also in the output's top-k."""
    r = np.argsort(-np.asarray(reference, np.float64).reshape(len(reference), -1), axis=1)[:, :k]
    o = np.argsort(-np.asarray(output, np.float64).reshape(len(output), -1), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / r.shape[1] for a, b in zip(r, o)]))


def _agrees(c: Any, ref: np.ndarray, out: np.ndarray) -> tuple[bool, dict[str, Any]]:
    """The fp16 verdict: cosine and top-5 overlap (top-1 agreement only reported)."""
    top5 = topk_overlap(ref, out)
    return c.ok(min_cosine=MIN_COSINE) and top5 >= MIN_TOP5_OVERLAP, {**c.to_dict(), "top5_overlap": top5}


def _export(ctx: VerifyContext) -> Any:
    """The project's ONNX export of the plain network (fp32, dynamic batch), as a ModelProto; made
    once per verify() run and kept in the run's context (the stages of one run share it)."""
    from ..export import export_onnx
    from ..onnx_io import load_model

    if "_onnx_export" not in ctx.options:
        with tempfile.TemporaryDirectory(prefix="spvit-verify-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(ctx.plain, path, spec=ctx.spec, check_batches=(1,))
            ctx.options["_onnx_export"] = load_model(path)
    return ctx.options["_onnx_export"]


def _images(ctx: VerifyContext) -> np.ndarray:
    from ..models import data_config
    from .samples import demo_images

    cfg = data_config(ctx.plain)
    n = int(ctx.options.get("images", IMAGES))
    return demo_images(n, ctx.spec.img_size, cfg["mean"], cfg["std"])


def _expected_plugins(ctx: VerifyContext) -> int:
    from ..spec import CONV_KERNEL

    return sum(1 for b in ctx.spec.blocks if b.attn in CONV_KERNEL)


@register_stage("onnx-plugin")
def onnx_plugin_stage(ctx: VerifyContext) -> Check:
    """Plugin graph vs plain graph, both through onnx.reference (fp32)."""
    from ..passes.checks import check_graph, run_reference
    from ..passes.prepare import transform_graph

    plain = _export(ctx)
    graph, _ = transform_graph(plain, plugins=True)
    x = np.concatenate([ctx.inputs.numpy().astype(np.float32), _images(ctx)[:4]])
    d = float(np.abs(run_reference(graph, x).astype(np.float64) - run_reference(plain, x)).max())
    checks = check_graph(graph)
    want = _expected_plugins(ctx)
    ok = d <= PLUGIN_TOLERANCE and checks.plugin_nodes == want and checks.batch_dynamic
    return Check("onnx-plugin", d, ok, {
        "vs": "the fp32 ONNX graph, both in onnx.reference", "tolerance": PLUGIN_TOLERANCE,
        "plugin_nodes": checks.plugin_nodes, "conv_blocks": want, "batch_dynamic": checks.batch_dynamic,
        "samples": int(len(x)),
    })


@register_stage("onnx-fp16")
def onnx_fp16_stage(ctx: VerifyContext) -> Check:
    """fp16 and fp16+plugin graphs vs the fp32 graph on real images, through onnx.reference."""
    from ..comparison import compare
    from ..passes.checks import check_graph, run_reference
    from ..passes.prepare import transform_graph

    plain = _export(ctx)
    images = _images(ctx)
    ref = run_reference(plain, images)
    graphs = {"fp16": transform_graph(plain, fp16=True)[0]}
    if _expected_plugins(ctx):
        graphs["fp16+plugins"] = transform_graph(graphs["fp16"], plugins=True)[0]
    detail: dict[str, Any] = {"vs": "the fp32 ONNX graph on the demo's digits, all in onnx.reference",
                              "images": int(len(images)), "min_cosine": MIN_COSINE, "min_top5_overlap": MIN_TOP5_OVERLAP}
    ok, worst = True, 0.0
    for name, g in graphs.items():
        got = run_reference(g, images)
        c = compare(ref, got)
        agrees, numbers = _agrees(c, ref, got)
        checks = check_graph(g)
        good = agrees and not checks.fp16_sensitive_ops and checks.batch_dynamic
        detail[name] = {**numbers, "fp16_sensitive_ops": checks.fp16_sensitive_ops,
                        "batch_dynamic": checks.batch_dynamic, "plugin_nodes": checks.plugin_nodes, "ok": good}
        ok, worst = ok and good, max(worst, c.max_abs_diff)
    return Check("onnx-fp16", worst, ok, detail)


@register_stage("tensorrt")
def tensorrt_stage(ctx: VerifyContext) -> Check:
    """An fp16 TensorRT engine (plugins for conv blocks) vs ONNX Runtime fp32, on real images."""
    from .runner import probe

    reason = probe()
    if reason is not None:
        return Check("tensorrt", math.nan, False, {"skipped": True, "reason": reason})
    from ..comparison import compare
    from ..export import ort_session
    from ..passes.prepare import prepare_graph
    from .build import BuildSettings, build_engine
    from ..onnx_io import save_model
    from .runner import TensorRTRunner

    images = np.concatenate([_images(ctx), ctx.inputs.numpy().astype(np.float32)])
    settings = BuildSettings(fp16=True, plugins=bool(_expected_plugins(ctx)), max_batch=max(64, len(images)))
    with tempfile.TemporaryDirectory(prefix="spvit-verify-trt-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        save_model(_export(ctx), onnx_path)
        sess = ort_session(onnx_path)
        ref = sess.run(None, {sess.get_inputs()[0].name: images})[0]
        graph, _ = prepare_graph(Path(tmp) / "model.trt.onnx", onnx=onnx_path, fp16=True, plugins=settings.plugins)
        meta = build_engine(graph, Path(tmp) / "model.plan", settings)
        runner = TensorRTRunner(Path(tmp) / "model.plan")
        try:
            out = next(iter(runner.infer({runner.input_names[0]: images}).values()))
        finally:
            runner.close()
    c = compare(ref, out)
    agrees, numbers = _agrees(c, ref, out)
    return Check("tensorrt", c.max_abs_diff, agrees, {
        "vs": "ONNX Runtime fp32", **numbers, "engine": {k: meta[k] for k in
                                                            ("tensorrt_version", "gpu", "precision", "plugins")},
    })
