"""The single-path layers: an MSA that shares its value/projection weights with a 3x3 and a
1x1 bottleneck convolution, chosen by three nested gates, and an FFN with one gate per unit.

Shapes: tokens (B, T, C) with T = 1 + N, patches on a (gh, gw) grid, head width d = C / H.
While searching, the conv branches reuse the MSA's per-head values (the official single-path
form): nine head-mixed value maps, shifted and summed for the 3x3, the centre one for the 1x1.
`conv_branch` (one convolution of the input with the mixed kernel) is the reference form.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import Attention, Mlp

from .gates import Gates

KERNEL_POSITIONS = 9
# kernel position p = row + 3 * col of each head-mixing column (column-major, as the official DeiT
# code: column k is position k, so the centre is column 4)
DEIT_POSITIONS: tuple[int, ...] = tuple(range(KERNEL_POSITIONS))
CENTRE = DEIT_POSITIONS.index(4)


def tokens_to_grid(p: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, C) patch tokens -> (B, C, gh, gw)."""
    B, N, C = p.shape
    return p.transpose(1, 2).reshape(B, C, grid[0], grid[1])


def grid_to_tokens(y: torch.Tensor) -> torch.Tensor:
    """(B, d, gh, gw) -> (B, N, d)."""
    return y.flatten(2).transpose(1, 2)


def attention_heads(attn: Attention, x: torch.Tensor, qkv: torch.Tensor) -> torch.Tensor:
    """timm's unmasked `Attention.forward(x)` up to its output projection, given its own
    `qkv(x)` (B, T, 3A), so the values can be shared: (B, T, A). The tests hold
    `proj(attention_heads(...))` equal to timm's forward."""
    B, T, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    q, k, v = qkv.reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.fused_attn:
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    else:
        o = attn.attn_drop(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
    o = attn.norm(o.transpose(1, 2).reshape(B, T, -1))
    return o * gate if gate is not None else o


class SinglePathAttention(nn.Module):
    """MSA / conv3x3 / conv1x1 / skip in one path, sharing the pretrained attention's weights.

    Gate values s = (s_1x1, s_3x3, s_msa), g = cumprod(s). The branch output is
    g3*MSA + g2*(1-g3)*conv3x3 + g1*(1-g2)*(1-g3)*conv1x1 on the patches; the class token
    takes g3*MSA + (1-g3)*its own input (passed through in conv and skip modes).
    `positions[m]` is the kernel position (row + 3*col) of head-mixing column m.
    """

    shared_values = True  # search with the single-path form (False: the reference conv form)
    skip_input = False  # pinned skip returns the input (x + LN1(x)), as official fine-tuning trained

    def __init__(self, attn: Attention, grid: tuple[int, int], alpha: float = 0.01, gate_init: float = 1.5,
                 positions: tuple[int, ...] = DEIT_POSITIONS) -> None:
        super().__init__()
        if sorted(positions) != list(range(KERNEL_POSITIONS)):
            raise ValueError(f"positions must order the 9 kernel positions, got {positions}")
        self.msa = attn
        self.dense_heads = attn.num_heads
        self.dim = attn.qkv.in_features
        self.head_dim = self.dim // attn.num_heads
        self.grid = tuple(grid)
        self.alpha = alpha
        self.positions = tuple(positions)
        self.centre = self.positions.index(4)
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

    def _value_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head value weights (H, d, C) and biases (H, d)."""
        C, H, d = self.dim, self.dense_heads, self.head_dim
        wv = self.msa.qkv.weight[2 * C :].reshape(H, d, C)
        bias = self.msa.qkv.bias
        return wv, bias[2 * C :].reshape(H, d) if bias is not None else wv.new_zeros(H, d)

    def position_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per mixing column k: V_k (9, d, C), beta_k (9, d), O_k (9, C, d)."""
        A = self.mixing()
        wv, bv = self._value_weights()
        return torch.einsum("hk,hdc->kdc", A, wv), torch.einsum("hk,hd->kd", A, bv), self._mixed_projections(A)

    def _mixed_projections(self, A: torch.Tensor) -> torch.Tensor:
        """O_k = sum_h A[h, k] W_o^h: (9, C, d)."""
        return torch.einsum("hk,chd->kcd", A, self.msa.proj.weight.reshape(self.dim, self.dense_heads, self.head_dim))

    def conv_weights(self, op: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unfolded conv kernel (d, C, k, k), conv bias (d,), projection (C, d) for `op`."""
        V, beta, O = self.position_weights()
        if op == "conv1x1":
            c = self.centre
            return V[c][:, :, None, None], beta[c], O[c]
        d, C = self.head_dim, self.dim
        by_position = V[[self.positions.index(p) for p in range(KERNEL_POSITIONS)]]  # p = row + 3*col
        kernel = by_position.reshape(3, 3, d, C).permute(2, 3, 1, 0)  # (d, C, row, col)
        return kernel, beta.sum(0), O.sum(0)

    def bn(self, op: str) -> nn.BatchNorm2d:
        return self.bn_3x3 if op == "conv3x3" else self.bn_1x1

    def conv_branch(self, patches: torch.Tensor, op: str) -> torch.Tensor:
        """Reference form: (B, N, C) normalised patch tokens -> (B, N, C) bottleneck-conv output."""
        w, b, proj = self.conv_weights(op)
        y = F.conv2d(tokens_to_grid(patches, self.grid), w, b, padding=w.shape[-1] // 2)
        y = F.relu(self.bn(op)(y))
        return F.linear(grid_to_tokens(y), proj, self.msa.proj.bias)

    def _tap_offsets(self) -> list[tuple[int, int]]:
        """(row, col) offset of the input each mixing column reads: position p = row + 3*col."""
        return [(p % 3 - 1, p // 3 - 1) for p in self.positions]

    def _border_bias(self, beta: torch.Tensor) -> torch.Tensor:
        """(gh, gw, d): the biases of the taps that fall outside the map (a zero-padded conv
        still adds its whole bias there, a shifted value map brings nothing)."""
        gh, gw = self.grid
        outside = torch.ones(KERNEL_POSITIONS, gh, gw, dtype=beta.dtype, device=beta.device)
        for k, (di, dj) in enumerate(self._tap_offsets()):
            outside[k, max(0, -di) : gh - max(0, di), max(0, -dj) : gw - max(0, dj)] = 0
        return torch.einsum("krc,kd->rcd", outside, beta)

    def shared_conv_features(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-path form of both conv branches up to their projection, from the MSA's patch
        values (B, N, H*d), bias included: nine head-mixed maps m_k, shifted and summed for the
        3x3, the centre map for the 1x1; then BatchNorm and ReLU. (B, N, d) each."""
        B, N, _ = values.shape
        (gh, gw), d, H = self.grid, self.head_dim, self.dense_heads
        A = self.mixing()
        _, bv = self._value_weights()
        heads = values.reshape(B * N, H, d).transpose(0, 1).reshape(H, B * N * d)
        maps = (A.t() @ heads).reshape(KERNEL_POSITIONS, B, gh, gw, d).unbind(0)  # m_k, (B, gh, gw, d)
        y3: torch.Tensor = self._border_bias(A.t() @ bv)
        for m, (di, dj) in zip(maps, self._tap_offsets()):
            src = m[:, max(0, di) : gh + min(0, di), max(0, dj) : gw + min(0, dj)]
            y3 = y3 + F.pad(src, (0, 0, max(0, -dj), max(0, dj), max(0, -di), max(0, di)))
        # BatchNorm2d over (B*N, d, 1, 1) views: the same statistics as over (B, d, gh, gw), no transposes
        return tuple(F.relu(self.bn(op)(y.reshape(B * N, d, 1, 1))).reshape(B, N, d)  # type: ignore[return-value]
                     for y, op in ((y3, "conv3x3"), (maps[self.centre].clone(), "conv1x1")))  # not all 9 maps kept

    def search_forward(self, x: torch.Tensor, g: torch.Tensor, w_msa: torch.Tensor, w_3x3: torch.Tensor,
                       w_1x1: torch.Tensor) -> torch.Tensor:
        """Every branch at once, sharing the MSA's q/k/v projection and its output projection:
        the three branch outputs, weighted by their gates, are one matmul of the concatenated
        features [MSA heads | 3x3 | 1x1] with [w_msa*W_o | w_3x3*O_3x3 | w_1x1*O_1x1]."""
        attn, C = self.msa, self.dim
        qkv = attn.qkv(x)
        heads = attention_heads(attn, x, qkv)
        r3, r1 = self.shared_conv_features(qkv[:, 1:, 2 * C :])
        O = self._mixed_projections(self.mixing())
        W = torch.cat([attn.proj.weight * w_msa, O.sum(0) * w_3x3, O[self.centre] * w_1x1], dim=1)
        b = attn.proj.bias
        out_p = F.linear(torch.cat([heads[:, 1:], r3, r1], dim=-1), W, None if b is None else b * (w_msa + w_3x3 + w_1x1))
        cls_heads = heads[:, :1].contiguous()  # a copy: backward keeps one row, not all of `heads`
        out_c = (1 - g[2]) * x[:, :1] + F.linear(cls_heads, W[:, :C], None if b is None else b * w_msa)
        return torch.cat([out_c, out_p], dim=1)

    def _can_share(self, kwargs: dict[str, Any]) -> bool:
        """The single-path form holds for timm's unmasked attention without output dropout."""
        unmasked = kwargs.get("attn_mask") is None and not kwargs.get("is_causal", False)
        return unmasked and not (self.training and self.msa.proj_drop.p > 0)

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
        if compute_all and self.shared_values and self._can_share(kwargs):
            return self.search_forward(x, g, w_msa, w_3x3, w_1x1)
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
        if self.skip_input and not compute_all:
            out_p = out_p + (1 - g[0]) * patches
        return torch.cat([out_c, out_p], dim=1)


class GatedMlp(nn.Module):
    """timm's Mlp with one gate per hidden unit, applied after the activation (folded into fc2's
    columns when no norm sits between: the same function, without a pass over (B, T, hidden))."""

    def __init__(self, mlp: Mlp, gate_init: float = 1.5) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1, self.norm, self.fc2, self.drop2 = (
            mlp.fc1, mlp.act, mlp.drop1, mlp.norm, mlp.fc2, mlp.drop2,
        )
        self.dense_width = mlp.fc1.out_features
        self.gates = Gates(self.dense_width, gate_init).to(mlp.fc1.weight.device)

    fold_gates = True  # False: multiply the activations (the earlier form, kept for the benchmark)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gates.sample()
        h = self.drop1(self.act(self.fc1(x)))  # dropout's mask commutes with a per-unit gate
        if self.fold_gates and isinstance(self.norm, nn.Identity):
            return self.drop2(F.linear(h, self.fc2.weight * g, self.fc2.bias))
        return self.drop2(self.fc2(self.norm(h * g)))


def fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv (weight (d, C, k, k), bias (d,)) followed by eval-mode BatchNorm -> one conv."""
    w64, b64 = weight.double(), bias.double()
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = w64 * scale[:, None, None, None]
    b = (b64 - bn.running_mean.double()) * scale + bn.bias.double()
    return w.to(weight.dtype), b.to(bias.dtype)


def conv_state(attn: SinglePathAttention, op: str, prefix: str) -> dict[str, torch.Tensor]:
    w, b, proj = attn.conv_weights(op)
    w, b = fold_bn(w, b, attn.bn(op))
    return {
        f"{prefix}conv.weight": w,
        f"{prefix}conv.bias": b,
        f"{prefix}proj.weight": proj,
        f"{prefix}proj.bias": attn.msa.proj.bias,
    }
