"""The latency model over a measured table: whole-network latency = `fixed_ms` + per block the ms its
attention op adds + the ms its FFN adds at its width (piecewise-linear between profiled widths).

`predict_latency(spec, lut)` for an architecture; `supernet_latency(supernet, lut)` the same sum with
the supernet's gates (hard values, sigmoid gradients), for the search's complexity loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import SpvitError
from ..spec import ArchSpec
from .table import BatchTable, LatencyTable

@dataclass(frozen=True)
class LatencyPrediction:
    total_ms: float
    fixed_ms: float
    attn_ms: tuple[float, ...]  # per block
    ffn_ms: tuple[float, ...]  # per block
    batch: int

    def to_dict(self) -> dict[str, Any]:
        return {"total_ms": round(self.total_ms, 4), "fixed_ms": round(self.fixed_ms, 4), "batch": self.batch,
                "attn_ms": [round(v, 4) for v in self.attn_ms], "ffn_ms": [round(v, 4) for v in self.ffn_ms]}

def ffn_curve(widths: Sequence[int], ffn_ms: Sequence[float]) -> np.ndarray:
    """ms of the FFN at every width 0..dense, linear between the profiled widths, made non-decreasing
    (a measured dip between neighbouring widths is noise: a wider FFN is never faster here)."""
    y = np.maximum.accumulate(np.asarray(ffn_ms, dtype=np.float64))
    return np.interp(np.arange(widths[-1] + 1), np.asarray(widths, dtype=np.float64), y)

def check_dims_fit(lut: LatencyTable, dims: Any, model: str) -> None:
    """One-line error unless the table was profiled for `model` with these block geometries (`ModelDims`)."""
    from dataclasses import asdict

    gi = lut.group_of_block()
    same = (model == lut.model and dims.img_size == lut.img_size and dims.depth == lut.depth
            and all(asdict(g) | {"grid": list(g.grid)} == lut.groups[gi[i]].geom for i, g in enumerate(dims.blocks)))
    if not same:
        raise SpvitError(f"the latency table is for {lut.model} at {lut.img_size} px ({lut.depth} blocks), not "
                         f"{model} at {dims.img_size} px ({dims.depth} blocks); profile this model with "
                         "'spvit-deploy profile-latency'")
    if dims.num_classes != lut.num_classes:
        import sys

        print(f"warning: the latency table was profiled with a {lut.num_classes}-class head, this model has "
              f"{dims.num_classes} classes (only the classifier's latency differs)", file=sys.stderr)


def check_spec_fits(spec: ArchSpec, lut: LatencyTable) -> None:
    """One-line error unless `spec` is an architecture of the model the table was profiled for."""
    from ..models import resolve_model_name

    if resolve_model_name(spec.model) != lut.model or spec.img_size != lut.img_size or len(spec.blocks) != lut.depth:
        raise SpvitError(f"the latency table is for {lut.model} at {lut.img_size} px ({lut.depth} blocks), not "
                         f"{spec.model} at {spec.img_size} px ({len(spec.blocks)} blocks); profile this model")
    widths = {b: g.widths[-1] for g in lut.groups for b in g.blocks}
    for i, b in enumerate(spec.blocks):
        if b.ffn_kept and b.ffn_kept[-1] >= widths[i]:
            raise SpvitError(f"block {i} keeps FFN unit {b.ffn_kept[-1]} but the table's dense FFN has {widths[i]}")

def predict_latency(spec: ArchSpec, lut: LatencyTable, batch: int | None = None) -> LatencyPrediction:
    """Predicted latency of `spec` on the table's runtime at `batch` (None: the table's only batch, or 1)."""
    check_spec_fits(spec, lut)
    t = lut.table(batch)
    return predict_ops(spec.ops, [b.ffn_width for b in spec.blocks], lut, t)

def predict_ops(ops: Sequence[str], widths: Sequence[int], lut: LatencyTable, t: BatchTable) -> LatencyPrediction:
    """`predict_latency` from per-block ops and FFN widths."""
    curves = [ffn_curve(g.widths, gl.ffn_ms) for g, gl in zip(lut.groups, t.groups)]
    gi = lut.group_of_block()
    attn = tuple(t.groups[gi[i]].attn_ms[op] if op != "skip" else 0.0 for i, op in enumerate(ops))
    ffn = tuple(float(curves[gi[i]][w]) for i, w in enumerate(widths))
    return LatencyPrediction(total_ms=t.fixed_ms + sum(attn) + sum(ffn), fixed_ms=t.fixed_ms, attn_ms=attn,
                             ffn_ms=ffn, batch=t.batch)

def dense_prediction(lut: LatencyTable, batch: int | None = None) -> float:
    t = lut.table(batch)
    gi = lut.group_of_block()
    return predict_ops(["msa"] * lut.depth, [lut.groups[g].widths[-1] for g in gi], lut, t).total_ms

def floor_prediction(lut: LatencyTable, batch: int | None = None) -> float:
    """Every block skipped, every FFN pruned: the fastest architecture."""
    return lut.table(batch).fixed_ms

def check_supernet_fits(supernet: Any, lut: LatencyTable) -> None:
    from ..families import family_of

    dims = family_of(supernet).dims(supernet)
    gi = lut.group_of_block()
    if dims.depth != lut.depth or any(g.dense_width != lut.groups[gi[i]].widths[-1] for i, g in enumerate(dims.blocks)):
        raise SpvitError(f"the latency table ({lut.model}, {lut.depth} blocks) does not fit this supernet")

def supernet_latency(supernet: Any, lut: LatencyTable, batch: int | None = None) -> Any:
    """Differentiable predicted ms of the architecture the gates choose (hard value, sigmoid gradient):
    the ops weighted by their nested gates as in `supernet_macs`, the FFN at the sum of its unit gates."""
    import torch

    from ..supernet.build import supernet_blocks

    check_supernet_fits(supernet, lut)
    t = lut.table(batch)
    blocks = supernet_blocks(supernet)
    dev = blocks[0].mlp.gates.logits.device
    gi = lut.group_of_block()
    total = torch.tensor(t.fixed_ms, device=dev)
    curves = [torch.tensor(ffn_curve(g.widths, gl.ffn_ms), dtype=torch.float32, device=dev)
              for g, gl in zip(lut.groups, t.groups)]
    for i, blk in enumerate(blocks):
        a = t.groups[gi[i]].attn_ms
        g = torch.cumprod(blk.attn.gates.indicator(), 0)
        total = total + g[2] * a["msa"] + g[1] * (1 - g[2]) * a["conv3x3"] + g[0] * (1 - g[1]) * (1 - g[2]) * a["conv1x1"]
        total = total + interp(blk.mlp.gates.indicator().sum(), curves[gi[i]])
    return total

def interp(w: Any, curve: Any) -> Any:
    """`curve` (ms at widths 0..dense) at the (possibly fractional) width `w`, linear in between, differentiable in `w`."""
    import torch

    n = curve.numel() - 1
    lo = torch.clamp(torch.floor(w.detach()), 0, max(n - 1, 0)).long()
    hi = torch.clamp(lo + 1, max=n)
    slope = curve[hi] - curve[lo]
    return curve[lo] + slope * (w - lo.to(w.dtype))
