"""Stage 2b, fine-tuning: the gates are pinned to the derived spec and the supernet's weights
train on, head mixing and BatchNorm included (started from the searched weights, not from
the dense model with uniform mixing as the official code does), with distillation from the
dense teacher and a cosine schedule; the result is materialized into the plain network.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec
from ..supernet import fix_gates
from ..supernet.build import supernet_blocks
from .config import TrainConfig
from .distill import combined_loss, teacher_logits
from .loop import Schedule, Stage, param_groups


def pin(supernet: nn.Module, spec: ArchSpec) -> nn.Module:
    """Pin the gates to `spec` and freeze their logits."""
    fix_gates(supernet, spec)
    for blk in supernet_blocks(supernet):
        blk.attn.gates.logits.requires_grad_(False)
        blk.mlp.gates.logits.requires_grad_(False)
    return supernet


def finetune_stage(supernet: nn.Module, teacher: nn.Module | None, cfg: TrainConfig, steps_per_epoch: int,
                   evaluate: Any) -> Stage:
    """Fine-tuning of a pinned supernet as a `Stage` for `run_stage`."""
    f = cfg.finetune
    no_decay = set(getattr(supernet, "no_weight_decay", lambda: set())())
    named = [(n, p) for n, p in supernet.named_parameters() if p.requires_grad]
    groups = param_groups(named, f.lr, f.weight_decay, lambda n, p: n in no_decay or n.endswith("head_logits"))
    total = f.epochs * steps_per_epoch
    schedule = Schedule(f.schedule, total, int(f.warmup_epochs * steps_per_epoch), f.min_lr / f.lr)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(x)
        t = teacher_logits(teacher, x) if teacher is not None else None
        return combined_loss(out, y, t, cfg.distill, cfg.distill_alpha, cfg.data.smoothing, cfg.distill_tau)

    return Stage(name="finetune", model=supernet, optimizers={"weights": torch.optim.AdamW(groups)},
                 schedules={"weights": schedule}, loss_fn=loss_fn, evaluate=evaluate, epochs=f.epochs)
