"""Learnable binary gates: straight-through Bernoulli samples while training, p > 0.5 at eval.

A `Gates` module holds logits theta (init 1.5); `fixed` (a 0/1 buffer) overrides both modes
once an architecture is chosen.
"""
from __future__ import annotations

import torch
from torch import nn


def st_bernoulli(logits: torch.Tensor) -> torch.Tensor:
    """Hard Bernoulli(sigmoid(logits)) sample whose gradient is that of a relaxed sample (tau=1)."""
    eps = torch.finfo(logits.dtype).eps
    u = torch.rand_like(logits).clamp(eps, 1 - eps)
    noisy = logits + torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid(noisy)
    hard = (noisy > 0).to(logits.dtype)
    return hard - soft.detach() + soft


class Gates(nn.Module):
    """`n` independent binary gates."""

    def __init__(self, n: int, init: float = 1.5) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.full((n,), float(init)))
        self.register_buffer("fixed", torch.empty(0), persistent=True)

    @property
    def is_fixed(self) -> bool:
        return self.fixed.numel() > 0

    def fix(self, values: torch.Tensor | list[float] | None) -> None:
        """Pin the gates to 0/1 `values`; `None` unpins them."""
        if values is None:
            self.fixed = torch.empty(0, device=self.logits.device)
            return
        v = torch.as_tensor(values, dtype=self.logits.dtype, device=self.logits.device)
        if v.shape != self.logits.shape:
            raise ValueError(f"expected {tuple(self.logits.shape)} gate values, got {tuple(v.shape)}")
        self.fixed = v.clone()

    def sample(self) -> torch.Tensor:
        """The gate values of this forward pass."""
        if self.is_fixed:
            return self.fixed
        if self.training:
            return st_bernoulli(self.logits)
        return (self.logits > 0).to(self.logits.dtype)

    def kept(self) -> torch.Tensor:
        """Deterministic decision (p > 0.5, or the pinned values) as a bool tensor."""
        return (self.fixed > 0.5) if self.is_fixed else (self.logits > 0)

    def indicator(self) -> torch.Tensor:
        """Hard decision with a sigmoid straight-through gradient, for the complexity loss."""
        if self.is_fixed:
            return self.fixed
        p = torch.sigmoid(self.logits)
        soft = torch.sigmoid(p - 0.5)
        return (p > 0.5).to(p.dtype) - soft.detach() + soft
