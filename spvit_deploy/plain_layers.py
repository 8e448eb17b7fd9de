"""The layers a plain class-token ViT block may hold in place of timm's attention or FFN (see `plain.py`)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ConvAttention(nn.Module):
    """Bottleneck conv in place of attention: (B, 1+N, C) -> (B, 1+N, C), class token passed through."""

    def __init__(self, dim: int, head_dim: int, kernel_size: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.conv = nn.Conv2d(dim, head_dim, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU()
        self.proj = nn.Linear(head_dim, dim)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        C = x.shape[-1]
        gh, gw = self.grid
        if self.conv.kernel_size == (1, 1):
            # a 1x1 conv is a Linear over the channels: no layout change at all. It runs on every
            # token and drops the class token's row after it, where rows are d wide, not C.
            y = self.act(F.linear(x, self.conv.weight.flatten(1), self.conv.bias))[:, 1:]
        else:
            p = x[:, 1:]  # (B, N, C) patch tokens, row-major over the grid
            # tokens are NHWC; permuting to NCHW (not transposing (B, N, C) first) lets ONNX Runtime
            # fold both permutes into its NCHWc reorders (channels_last) instead of copying twice
            y = self.act(self.conv(p.reshape(-1, gh, gw, C).permute(0, 3, 1, 2)))
            y = y.permute(0, 2, 3, 1).reshape(-1, gh * gw, self.conv.out_channels)  # (B, N, d)
        return torch.cat([x[:, :1], self.proj(y)], dim=1)


class SkipAttention(nn.Module):
    """No attention: patches get a zero branch, the class token is passed through."""

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        # one Pad in the exported graph instead of Slice + zeros + Concat
        return F.pad(x[:, :1], (0, 0, 0, x.shape[1] - 1))


class InputBranch(nn.Module):
    """A skip block trained as x + LN1(x) (official SPViT fine-tuning): the branch returns its input."""

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return x


class BiasOnly(nn.Module):
    """An FFN whose every hidden unit was pruned: its output is fc2's bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + self.bias
