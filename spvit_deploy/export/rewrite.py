"""Export-time module rewrites that give ONNX Runtime a leaner graph and compute the same function.

timm's `Attention` projects q, k and v with one Linear, reshapes to (B, T, 3, H, d), permutes to
(3, B, H, T, d) and unbinds: in ONNX a Split of the whole qkv tensor plus a transpose of each part
(two copies of a (B, T, 3C) tensor). `SplitQKVAttention` projects q, k and v separately (the same
weights, sliced) so each needs only its one (B, T, H, d) -> (B, H, T, d) transpose. Applied to the
dense and the compressed model alike; the export parity check compares against the original module.
"""
from __future__ import annotations

import torch
from torch import nn


def _linear_from(src: nn.Linear, rows: slice) -> nn.Linear:
    w = src.weight[rows]
    out = nn.Linear(w.shape[1], w.shape[0], bias=src.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if src.bias is not None:
            out.bias.copy_(src.bias[rows])
    return out


class SplitQKVAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections: (B, T, C) -> (B, T, C)."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        A = attn.attn_dim
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.q = _linear_from(attn.qkv, slice(0, A))
        self.k = _linear_from(attn.qkv, slice(A, 2 * A))
        self.v = _linear_from(attn.qkv, slice(2 * A, 3 * A))
        self.q_norm, self.k_norm, self.norm, self.proj = attn.q_norm, attn.k_norm, attn.norm, attn.proj

    def _heads(self, t: torch.Tensor, T: int) -> torch.Tensor:
        return t.reshape(-1, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def forward(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        T = x.shape[1]
        q = self.q_norm(self._heads(self.q(x), T)) * self.scale
        k = self.k_norm(self._heads(self.k(x), T))
        v = self._heads(self.v(x), T)
        a = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (a @ v).transpose(1, 2).reshape(-1, T, self.num_heads * self.head_dim)
        return self.proj(self.norm(y))


def rewrite_for_export(model: nn.Module) -> nn.Module:
    """Swap every plain timm `Attention` in `model.blocks` for `SplitQKVAttention`, in place."""
    from timm.layers import Attention

    for blk in getattr(model, "blocks", []):
        attn = blk.attn
        if type(attn) is Attention and getattr(attn, "gate", None) is None:
            blk.attn = SplitQKVAttention(attn)
    return model
