"""A latency table with known numbers for the nano ViT, made in the test (no timing)."""
from __future__ import annotations

from typing import Any

NANO = "vit_nano_patch4_32"
FIXED, ATTN = 1.0, {"msa": 0.5, "conv3x3": 0.2, "conv1x1": 0.1}
FFN = (0.0, 0.2, 0.25, 0.35, 0.5)  # at widths 0, 64, 128, 192, 256 (nano's dense FFN)


def fake_lut_dict(batches: tuple[int, ...] = (1,), threads: int = 2) -> dict[str, Any]:
    from spvit_deploy.latency.profile import block_groups
    from spvit_deploy.latency.table import here_fingerprint
    from spvit_deploy.models import dims_for

    dims = dims_for(NANO)
    groups = block_groups(dims, steps=4)
    assert [g.widths for g in groups] == [(0, 64, 128, 192, 256)]
    tables = {str(b): {"batch": b, "fixed_ms": FIXED * b, "dense_ms": 1.0,
                       "groups": [{"attn_ms": {k: v * b for k, v in ATTN.items()}, "ffn_ms": [v * b for v in FFN]}],
                       "configs": []} for b in batches}
    return {"kind": "spvit-latency-lut", "lut_version": 1, "model": NANO, "family": "vit", "img_size": 32,
            "num_classes": 10, "backend": "onnxruntime", "precision": "fp32", "threads": threads,
            "environment": here_fingerprint("onnxruntime", threads, "fp32"), "export": {}, "timing": {},
            "groups": [{"blocks": list(g.blocks), "geom": g.geom, "widths": list(g.widths)} for g in groups],
            "batches": tables}
