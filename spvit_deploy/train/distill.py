"""Losses: the task loss (label smoothing or mixup's soft targets) and distillation from the
dense teacher, soft (KL at temperature tau) or DeiT-style hard (teacher's argmax as labels).

Shapes: logits (B, K); targets (B,) class indices or (B, K) soft targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def task_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy against class indices (with label smoothing) or soft targets."""
    logits = logits.float()
    if target.ndim == 2:
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=smoothing)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, tau: float = 1.0) -> torch.Tensor:
    """`soft`: tau^2 * KL(teacher/tau || student/tau); `hard`: cross-entropy with the teacher's top-1."""
    student, teacher = student.float(), teacher.float().detach()
    if kind == "soft":
        return F.kl_div(
            F.log_softmax(student / tau, dim=-1), F.log_softmax(teacher / tau, dim=-1),
            reduction="batchmean", log_target=True,
        ) * (tau * tau)
    if kind == "hard":
        return F.cross_entropy(student, teacher.argmax(dim=-1))
    raise ValueError(f"unknown distillation '{kind}'")


def teacher_logits(teacher: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits without autograd bookkeeping (`inference_mode`; cloned out of it so
    the losses can save them for backward)."""
    with torch.inference_mode():
        t = teacher(x)
    return t.clone()


def combined_loss(
    student: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor | None, kind: str, alpha: float,
    smoothing: float = 0.0, tau: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(1 - alpha) * task + alpha * distill (task alone when `kind` is none); the parts for logging."""
    task = task_loss(student, target, smoothing)
    if kind == "none" or teacher is None:
        return task, {"task": float(task.detach())}
    kd = distill_loss(student, teacher, kind, tau)
    return (1 - alpha) * task + alpha * kd, {"task": float(task.detach()), "distill": float(kd.detach())}
