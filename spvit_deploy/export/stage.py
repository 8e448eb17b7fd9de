"""The `onnx` verify stage: export the plain network, run it in ONNX Runtime, compare with PyTorch (fp32).

Registered in `verification.STAGE_MODULES`; `verify(..., stages=("onnx",), options={"pad_widths": 16})`
checks the padded graph instead.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..verification import Check, VerifyContext, register_stage
from .onnx import INPUT_NAME, OUTPUT_NAME, PARITY_TOLERANCE, export_onnx
from .ort import ort_session


@register_stage("onnx")
def onnx_stage(ctx: VerifyContext) -> Check:
    pad = ctx.options.get("pad_widths")
    tol = float(ctx.options.get("onnx_tolerance", PARITY_TOLERANCE))
    with tempfile.TemporaryDirectory(prefix="spvit-verify-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        rep = export_onnx(ctx.plain, path, spec=ctx.spec, variant="compressed", pad_widths=pad, check_batches=())
        session = ort_session(path)
        x = ctx.inputs.detach().float().cpu().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        single = session.run([OUTPUT_NAME], {INPUT_NAME: x[:1]})[0]  # the batch axis is dynamic
        del session
    ref = ctx.reference.detach().double().cpu().numpy()
    diff = float(max(np.abs(got - ref).max(), np.abs(single - ref[:1]).max()))
    return Check("onnx", diff, diff <= tol, {
        "vs": "materialized (PyTorch fp32)", "runtime": "onnxruntime CPU", "opset": rep.opset,
        "nodes": sum(rep.op_counts.values()), "batches": [int(x.shape[0]), 1], "pad_widths": pad,
        "tolerance": tol,
    })
