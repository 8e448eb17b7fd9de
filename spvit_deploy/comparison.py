"""Compare two runners' outputs: max abs diff, cosine similarity, top-1 agreement (any two backends,
any stage: the verify stages and the benchmark both judge with it).

Exact stages (fp32 export) are judged by max abs diff; lossy ones (fp16, TensorRT) by cosine
and top-1 agreement.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import SpvitError


@dataclass(frozen=True)
class Comparison:
    max_abs_diff: float
    mean_abs_diff: float
    cosine: float  # the worst per-sample cosine similarity
    top1_agreement: float  # share of samples whose argmax over the last axis agrees

    def ok(self, max_abs_diff: float | None = None, min_cosine: float | None = None,
           min_top1: float | None = None) -> bool:
        return ((max_abs_diff is None or self.max_abs_diff <= max_abs_diff)
                and (min_cosine is None or self.cosine >= min_cosine)
                and (min_top1 is None or self.top1_agreement >= min_top1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(reference: np.ndarray, output: np.ndarray) -> Comparison:
    """Compare `output` with `reference` (same shape; the first axis is the batch)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise SpvitError(f"outputs differ in shape: {out.shape} vs reference {ref.shape}")
    if ref.size == 0:
        return Comparison(0.0, 0.0, 1.0, 1.0)
    diff = np.abs(ref - out)
    r = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref[None]
    o = out.reshape(out.shape[0], -1) if out.ndim > 1 else out[None]
    num = (r * o).sum(1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(np.all(r == o, axis=1), 1.0, 0.0))
    top1 = float(np.mean(r.argmax(1) == o.argmax(1)))
    return Comparison(float(diff.max()), float(diff.mean()), float(cos.min()), top1)


def compare_outputs(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, Comparison]:
    """`compare` for every output name the reference has."""
    missing = [k for k in reference if k not in outputs]
    if missing:
        raise SpvitError(f"outputs {missing} are missing (got {sorted(outputs)})")
    return {k: compare(reference[k], outputs[k]) for k in reference}
