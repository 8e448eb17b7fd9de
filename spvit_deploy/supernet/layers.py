"""The single-path layers: an MSA that shares its value/projection weights with a 3x3 and a
1x1 bottleneck convolution, chosen by three nested gates, and an FFN with one gate per unit.

Shapes: tokens (B, T, C) with T = 1 + N, patches on a (gh, gw) grid, head width d = C / H.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import Attention, Mlp

from .gates import Gates

KERNEL_POSITIONS = 9
CENTRE = 4


def tokens_to_grid(p: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) patch tokens -> (B, C, gh, gw)."""
    B, N, C = p.shape
    return p.transpose(1, 2).reshape(B, C, grid[0], grid[1])


def grid_to_tokens(y: torch.Tensor) -> torch.Tensor:
    """(B, d, gh, gw) -> (B, N, d)."""
    return y.flatten(2).transpose(1, 2)


class SinglePathAttention(nn.Module):
    """MSA / conv3x3 / conv1x1 / skip in one path, sharing the pretrained attention's weights.

    Gate values s = (s_1x1, s_3x3, s_msa), g = cumprod(s). The branch output is
    g3*MSA + g2*(1-g3)*conv3x3 + g1*(1-g2)*(1-g3)*conv1x1 on the patches; the class token
    takes g3*MSA + (1-g3)*its own input (passed through in conv and skip modes).
    """

    def __init__(self, attn: Attention, grid: tuple[int, int], alpha: float = 0.01, gate_init: float = 1.5) -> None:
        super().__init__()
        self.msa = attn
        self.dense_heads = attn.num_heads
        self.dim = attn.qkv.in_features
        self.head_dim = self.dim // attn.num_heads
        self.grid = tuple(grid)
        self.alpha = alpha
        dev = attn.qkv.weight.device
        self.head_logits = nn.Parameter(torch.ones(attn.num_heads, KERNEL_POSITIONS, device=dev))
        self.bn_3x3 = nn.BatchNorm2d(self.head_dim, device=dev)
        self.bn_1x1 = nn.BatchNorm2d(self.head_dim, device=dev)
        self.gates = Gates(3, gate_init).to(dev)
        self.last_gates: torch.Tensor | None = None

    # -- shared weights ---------------------------------------------------------------------
    def mixing(self) -> torch.Tensor:
        """A = softmax(P / alpha) over heads: (H, 9)."""
        return torch.softmax(self.head_logits / self.alpha, dim=0)

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per kernel position k: V_k (9, d, C), beta_k (9, d), O_k (9, C, d)."""
        C, H, d = self.dim, self.dense_heads, self.head_dim
        A = self.mixing()
        wv = self.msa.qkv.weight[2 * C :].reshape(H, d, C)
        bias = self.msa.qkv.bias
        bv = bias[2 * C :].reshape(H, d) if bias is not None else wv.new_zeros(H, d)
        wo = self.msa.proj.weight.reshape(C, H, d)
        V = torch.einsum("hk,hdc->kdc", A, wv)
        beta = torch.einsum("hk,hd->kd", A, bv)
        O = torch.einsum("hk,chd->kcd", A, wo)
        return V, beta, O

    def conv_weights(self, op: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unfolded conv kernel (d, C, k, k), conv bias (d,), projection (C, d) for `op`."""
        V, beta, O = self.position_weights()
        if op == "conv1x1":
            return V[CENTRE][:, :, None, None], beta[CENTRE], O[CENTRE]
        d, C = self.head_dim, self.dim
        # position k sits at (row i, col j) with k = i + 3*j (column-major, as the official code)
        kernel = V.reshape(3, 3, d, C).permute(2, 3, 1, 0)
        return kernel, beta.sum(0), O.sum(0)

    def bn(self, op: str) -> nn.BatchNorm2d:
        return self.bn_3x3 if op == "conv3x3" else self.bn_1x1

    def conv_branch(self, patches: torch.Tensor, op: str) -> torch.Tensor:
        """(B, N, C) normalised patch tokens -> (B, N, C) bottleneck-conv output."""
        w, b, proj = self.conv_weights(op)
        y = F.conv2d(tokens_to_grid(patches, self.grid), w, b, padding=w.shape[-1] // 2)
        y = F.relu(self.bn(op)(y))
        return F.linear(grid_to_tokens(y), proj, self.msa.proj.bias)

    # -- gates ------------------------------------------------------------------------------
    def nested_gates(self) -> torch.Tensor:
        g = torch.cumprod(self.gates.sample(), dim=0)
        if self.training and not self.gates.is_fixed and bool(g[0]) and bool(g[1]):
            # slower gradients for the cheaper gates when a costlier one is on
            g = torch.stack([g[0].detach(), g[1].detach() if bool(g[2]) else g[1], g[2]])
        return g

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        g = self.nested_gates()
        self.last_gates = g.detach()
        cls, patches = x[:, :1], x[:, 1:]
        w_msa, w_3x3, w_1x1 = g[2], g[1] * (1 - g[2]), g[0] * (1 - g[1]) * (1 - g[2])
        compute_all = self.training and not self.gates.is_fixed  # gradients reach every gate
        out_p = torch.zeros_like(patches)
        out_c = (1 - g[2]) * cls
        if compute_all or bool(w_msa):
            msa = self.msa(x, **kwargs)
            out_p = out_p + w_msa * msa[:, 1:]
            out_c = out_c + w_msa * msa[:, :1]
        if compute_all or bool(w_3x3):
            out_p = out_p + w_3x3 * self.conv_branch(patches, "conv3x3")
        if compute_all or bool(w_1x1):
            out_p = out_p + w_1x1 * self.conv_branch(patches, "conv1x1")
        return torch.cat([out_c, out_p], dim=1)


class GatedMlp(nn.Module):
    """timm's Mlp with one gate per hidden unit, applied after the activation."""

    def __init__(self, mlp: Mlp, gate_init: float = 1.5) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1, self.norm, self.fc2, self.drop2 = (
            mlp.fc1, mlp.act, mlp.drop1, mlp.norm, mlp.fc2, mlp.drop2,
        )
        self.dense_width = mlp.fc1.out_features
        self.gates = Gates(self.dense_width, gate_init).to(mlp.fc1.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x)) * self.gates.sample()
        return self.drop2(self.fc2(self.norm(self.drop1(h))))
