"""Stage 2a, gate search: the supernet's weights and its gates train together; the complexity
loss lambda * (T - F)^2, F the supernet's differentiable GMACs, pulls the architecture to the
target T; `derive_for_target` then reads the architecture off the gates so that it lands on T.
With a latency target (`LatencyTarget`, from a measured latency table) F is the predicted latency
instead (`supernet_latency`), the loss lambda * dense_GMACs^2 * ((T - F) / dense_ms)^2 pulls as hard
as the MACs loss at the same relative miss, and `derive_for_latency` lands on the predicted T.

Two AdamW optimizers, as in the official recipe: the weights (weight decay on matrices), and
the gate and head-mixing logits (no weight decay, their own learning rate).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import macs as M
from ..families import ModelDims
from ..latency.table import LatencyTable
from ..models import model_dims
from ..spec import ArchSpec, BlockSpec
from ..supernet import derive_spec, supernet_macs
from ..supernet.build import supernet_blocks
from .config import TrainConfig
from .distill import combined_loss, teacher_logits
from .loop import Schedule, Stage, param_groups

LEVELS = ("skip", "conv1x1", "conv3x3", "msa")  # level = how many nested gates are on (spec.OP_CODES)


def is_gate_param(name: str) -> bool:
    """Gate logits and head-mixing logits: trained by the gate optimizer, never weight-decayed."""
    return name.endswith("gates.logits") or name.endswith("head_logits")


def complexity_loss(supernet: nn.Module, target_gmacs: float, lam: float,
                    dims: ModelDims | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(lambda * (T - F)^2, F), F the GMACs of the architecture the gates choose, differentiable in the gates."""
    f = supernet_macs(supernet, dims) / 1e9
    return lam * (target_gmacs - f) ** 2, f


@dataclass(frozen=True)
class LatencyTarget:
    """A latency table at one batch size and, for a latency-targeted search, the target in predicted ms
    (`ms` None: the table only reports predicted and measured latency beside a MACs target)."""

    lut: LatencyTable
    batch: int
    dense_ms: float  # predicted
    floor_ms: float  # predicted, every block skipped and every FFN pruned
    ms: float | None = None
    speedup: float | None = None  # as asked (--target-speedup), else None
    ffn_multiple: int = 1  # derived FFN widths are multiples of this (or the dense width)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.lut.backend, "precision": self.lut.precision, "threads": self.lut.threads,
                "batch": self.batch, "target_ms": None if self.ms is None else round(self.ms, 4),
                "target_speedup": self.speedup, "dense_predicted_ms": round(self.dense_ms, 4),
                "floor_predicted_ms": round(self.floor_ms, 4), "ffn_multiple": self.ffn_multiple}


def latency_loss(supernet: nn.Module, target: LatencyTarget, lam: float, dense_gmacs: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(lambda * dense_GMACs^2 * ((T - F) / dense_ms)^2, F), F the predicted ms of the gates' architecture."""
    from ..latency.predict import supernet_latency

    assert target.ms is not None
    f = supernet_latency(supernet, target.lut, target.batch)
    return lam * dense_gmacs**2 * ((target.ms - f) / target.dense_ms) ** 2, f


def search_stage(supernet: nn.Module, teacher: nn.Module | None, cfg: TrainConfig, target_gmacs: float | None,
                 steps_per_epoch: int, evaluate: Any, latency: LatencyTarget | None = None) -> Stage:
    """The search as a `Stage` for `run_stage`; with `latency.ms` set the complexity loss is the latency one."""
    s = cfg.search
    dims = model_dims(supernet)
    dense_gmacs = M.cost(dims).gmacs
    by_latency = latency is not None and latency.ms is not None
    no_decay = set(getattr(supernet, "no_weight_decay", lambda: set())())
    named = [(n, p) for n, p in supernet.named_parameters() if p.requires_grad]
    weights = [(n, p) for n, p in named if not is_gate_param(n)]
    gates = [p for n, p in named if is_gate_param(n)]
    optimizers = {
        "weights": torch.optim.AdamW(param_groups(weights, s.lr, s.weight_decay, lambda n, p: n in no_decay)),
        "gates": torch.optim.AdamW([{"params": gates, "lr": s.gate_lr, "base_lr": s.gate_lr, "weight_decay": 0.0}]),
    }
    total = s.epochs * steps_per_epoch
    schedules = {
        "weights": Schedule(s.schedule, total, int(s.warmup_epochs * steps_per_epoch), s.min_lr / s.lr),
        "gates": Schedule("constant", total),
    }

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(x)
        t = teacher_logits(teacher, x) if teacher is not None else None
        loss, parts = combined_loss(out, y, t, cfg.distill, cfg.distill_alpha, cfg.data.smoothing, cfg.distill_tau)
        if by_latency:
            assert latency is not None
            closs, ms = latency_loss(supernet, latency, s.lam, dense_gmacs)
            with torch.no_grad():
                f = supernet_macs(supernet, dims) / 1e9
            return loss + closs, {**parts, "complexity": float(closs.detach()), "gmacs": float(f),
                                  "latency_ms": float(ms.detach())}
        assert target_gmacs is not None
        closs, f = complexity_loss(supernet, target_gmacs, s.lam, dims)
        return loss + closs, {**parts, "complexity": float(closs.detach()), "gmacs": float(f.detach())}

    return Stage(name="search", model=supernet, optimizers=optimizers, schedules=schedules, loss_fn=loss_fn,
                 evaluate=evaluate, epochs=s.epochs)


def derive_for_target(supernet: nn.Module, model_name: str, target_macs: float, tolerance: float = 0.02) -> ArchSpec:
    """The searched architecture, landing on the target.

    First the paper's rule (a gate is on when p > 0.5). If that misses `target_macs` by more than
    `tolerance`, the attention ops stay (stepped down or up by gate confidence only if the FFNs
    cannot absorb the difference) and the FFN units with the highest gate logits, ranked across
    all blocks, are kept until the MACs match the target within one FFN unit.
    """
    spec = derive_spec(supernet, model_name, source="search")
    dims = model_dims(supernet)
    first = M.cost(dims, spec).macs
    if abs(first - target_macs) <= tolerance * target_macs:
        return _with_extra(spec, target_macs, first, "p > 0.5")
    blocks_ = supernet_blocks(supernet)
    attn_logits = [blk.attn.gates.logits.detach().float().cpu() for blk in blocks_]
    levels = [LEVELS.index(op) for op in spec.ops]
    unit = torch.cat([torch.full((g.dense_width,), float(M.ffn_macs(1, g))) for g in dims.blocks])
    all_units = float(unit.sum())

    def ffn_budget() -> float:
        attn = sum(M.attn_macs(LEVELS[lv], g) for lv, g in zip(levels, dims.blocks))
        return target_macs - dims.fixed_macs - attn

    while ffn_budget() < 0:  # the ops alone overshoot: turn off the least confident top gate
        i = min((i for i, lv in enumerate(levels) if lv > 0), key=lambda i: float(attn_logits[i][levels[i] - 1]))
        levels[i] -= 1
    while ffn_budget() > all_units:  # even every FFN unit undershoots: turn on the most confident next gate
        i = max((i for i, lv in enumerate(levels) if lv < 3), key=lambda i: float(attn_logits[i][levels[i]]))
        levels[i] += 1
    # the most confident units, ranked across all blocks, while their MACs (per unit: 2 * tokens * width of
    # their block) fit the budget to the nearest unit
    ffn_logits = torch.cat([blk.mlp.gates.logits.detach().float().cpu() for blk in blocks_])
    order = torch.argsort(ffn_logits, descending=True, stable=True)
    spent = torch.cumsum(unit[order].double(), 0)
    keep = int(torch.searchsorted(spent - unit[order].double() / 2, torch.tensor([ffn_budget()], dtype=torch.float64)))
    kept = torch.zeros(len(unit), dtype=torch.bool)
    kept[order[:keep]] = True
    blocks, start = [], 0
    for lv, width in zip(levels, dims.mlp_hidden):
        idx = torch.nonzero(kept[start:start + width]).flatten().tolist()
        blocks.append(BlockSpec(attn=LEVELS[lv], ffn_kept=tuple(int(k) for k in idx)))
        start += width
    fitted = replace(spec, blocks=tuple(blocks), source="search")
    return _with_extra(fitted, target_macs, first, "p > 0.5, then fitted to the target by gate logits")


def derive_for_latency(supernet: nn.Module, model_name: str, target: LatencyTarget, tolerance: float = 0.02
                       ) -> ArchSpec:
    """The searched architecture, landing on the predicted latency target: as `derive_for_target`, with each
    block's op and FFN priced by the latency table (an FFN unit costs what its block's FFN curve adds at that
    width), so the FFN units ranked across blocks are kept while the predicted total fits the target.

    With `target.ffn_multiple` N > 1 every FFN width is a multiple of N (or the dense width): a block's units,
    ranked by gate logit, are taken N at a time, the chunks ranked across blocks by their mean logit."""
    from ..latency.predict import ffn_curve, predict_latency

    assert target.ms is not None
    goal, mult = target.ms, max(1, target.ffn_multiple)
    spec = derive_spec(supernet, model_name, source="search")
    first = predict_latency(spec, target.lut, target.batch).total_ms
    if abs(first - goal) <= tolerance * goal and mult == 1:
        return _with_latency_extra(spec, target, first, first, "p > 0.5")
    lut, t = target.lut, target.lut.table(target.batch)
    gi = lut.group_of_block()
    attn = [dict(t.groups[g].attn_ms, skip=0.0) for g in gi]
    curves = [ffn_curve(lut.groups[g].widths, t.groups[g].ffn_ms) for g in gi]
    blocks_ = supernet_blocks(supernet)
    attn_logits = [blk.attn.gates.logits.detach().float().cpu() for blk in blocks_]
    levels = [LEVELS.index(op) for op in spec.ops]

    def ffn_budget() -> float:
        return goal - t.fixed_ms - sum(a[LEVELS[lv]] for a, lv in zip(attn, levels))

    while ffn_budget() < 0 and any(levels):  # the ops alone overshoot: turn off the least confident top gate
        i = min((i for i, lv in enumerate(levels) if lv > 0), key=lambda i: float(attn_logits[i][levels[i] - 1]))
        levels[i] -= 1
    while ffn_budget() > sum(c[-1] for c in curves) and min(levels) < 3:  # undershoot: most confident next gate on
        i = max((i for i, lv in enumerate(levels) if lv < 3), key=lambda i: float(attn_logits[i][levels[i]]))
        levels[i] += 1
    logits = [blk.mlp.gates.logits.detach().float().cpu().numpy() for blk in blocks_]
    ranked = [np.argsort(-lg, kind="stable") for lg in logits]  # each block's units, most confident first
    chunks = [(b, k) for b, r in enumerate(ranked) for k in range(0, len(r), mult)]  # (block, first unit of chunk)
    score = [float(logits[b][ranked[b][k:k + mult]].mean()) for b, k in chunks]
    order = sorted(range(len(chunks)), key=lambda j: -score[j])  # stable: a block's chunks stay in order
    width = [0] * len(curves)
    budget, spent, keep, best = ffn_budget(), 0.0, 0, abs(ffn_budget())
    for n, j in enumerate(order, 1):  # the most confident chunks while the predicted total approaches the target
        b, k = chunks[j]
        w = min(k + mult, len(ranked[b]))
        spent += float(curves[b][w] - curves[b][width[b]])
        width[b] = w
        if abs(budget - spent) < best:
            keep, best = n, abs(budget - spent)
        if spent > budget:
            break
    width = [0] * len(curves)
    for j in order[:keep]:
        b, k = chunks[j]
        width[b] = max(width[b], min(k + mult, len(ranked[b])))
    blocks = [BlockSpec(attn=LEVELS[lv], ffn_kept=tuple(sorted(int(u) for u in ranked[b][:width[b]])))
              for b, lv in enumerate(levels)]
    fitted = replace(spec, blocks=tuple(blocks), source="search")
    got = predict_latency(fitted, lut, target.batch).total_ms
    rule = "p > 0.5, then fitted to the latency target by gate logits" + (
        f", FFN widths in multiples of {mult}" if mult > 1 else "")
    return _with_latency_extra(fitted, target, first, got, rule)


def derive_calibrated(supernet: nn.Module, model_name: str, target: LatencyTarget,
                      measure: Any, log: Any = None, **kw: Any) -> ArchSpec:
    """`derive_for_latency`, then measured calibration (`latency.calibrate`): the candidate is timed against the
    dense model on the table's runtime (interleaved) and re-derived at a corrected predicted target until its
    measured speedup is within 2.5% of the target's (the speedup asked, or dense predicted ms / target ms).
    `measure(spec)` -> {dense_ms, ms, speedup} (the pipeline hands in `latency.measure.measure_speedup` on the
    table's runtime: timing exports and runs networks, a later stage than the search)."""
    from ..latency.calibrate import calibrate

    assert target.ms is not None
    speedup = target.speedup or target.dense_ms / target.ms
    spec, _ = calibrate(lambda ms: derive_for_latency(supernet, model_name, replace(target, ms=ms)), measure,
                        speedup, target.dense_ms, target.floor_ms, log=log, **kw)
    return replace(spec, extra={**spec.extra, "target_latency_ms": round(target.ms, 4)})


def _with_latency_extra(spec: ArchSpec, target: LatencyTarget, first_ms: float, got_ms: float, rule: str) -> ArchSpec:
    return replace(spec, extra={"target_latency_ms": round(target.ms or 0.0, 4), "gates_latency_ms": round(first_ms, 4),
                                "predicted_latency_ms": round(got_ms, 4), "latency_batch": target.batch,
                                "latency_backend": target.lut.backend, "ffn_multiple": target.ffn_multiple,
                                "rule": rule})


def _with_extra(spec: ArchSpec, target_macs: float, first_macs: int, rule: str) -> ArchSpec:
    return replace(spec, extra={"target_gmacs": round(target_macs / 1e9, 6),
                                "gates_gmacs": round(first_macs / 1e9, 6), "rule": rule})


def gate_summary(supernet: nn.Module) -> list[dict[str, Any]]:
    """Per block: the gate probabilities (1x1, 3x3, MSA) and the FFN units with p > 0.5."""
    rows = []
    for i, blk in enumerate(supernet_blocks(supernet)):
        p = torch.sigmoid(blk.attn.gates.logits.detach().float()).tolist()
        rows.append({"block": i, "p_attn": [round(v, 4) for v in p],
                     "ffn_p_gt_half": int((blk.mlp.gates.logits > 0).sum())})
    return rows

