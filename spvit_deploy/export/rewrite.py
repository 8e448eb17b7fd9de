"""Export-time module rewrites that give ONNX Runtime a leaner graph and compute the same function.

timm's `Attention` projects q, k and v with one Linear, reshapes to (B, T, 3, H, d), permutes to
(3, B, H, T, d) and unbinds: in ONNX a Split of the whole qkv tensor plus a transpose of each part
(two copies of a (B, T, 3C) tensor). `SplitQKVAttention` projects q, k and v separately (the same
weights, sliced) so each needs only its one (B, T, H, d) -> (B, H, T, d) transpose.

Two bias Adds per attention go away too, exactly in real arithmetic: the key bias adds q.b_k to
every score of a query's row, which softmax ignores; the value bias comes out of `softmax @ v`
unchanged (each row of the softmax sums to 1), so it folds into the projection's bias
(b_proj + W_proj b_v). Only where no norm sits between them (timm's default, every DeiT).

`norm_class_token_only`: with class-token pooling only the class token's row of the final
LayerNorm is read, and LayerNorm works per token, so it moves after the pooling (into timm's
`fc_norm` slot). Without it ONNX Runtime fuses the last residual Add, fc2's bias and the final
norm into one `SkipLayerNormalization`, slower on CPU than the ops it replaces
(benchmarks/results/ort_alternatives.md).

Applied to the dense and the compressed model alike; the export parity check compares against
the original module.
"""
from __future__ import annotations

import torch
from torch import nn


def _linear_from(src: nn.Linear, rows: slice = slice(None), bias: bool = True) -> nn.Linear:
    """A copy of `src`'s output rows `rows`; without its bias when `bias` is False."""
    w = src.weight[rows]
    keep = bias and src.bias is not None
    out = nn.Linear(w.shape[1], w.shape[0], bias=keep, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        if keep:
            out.bias.copy_(src.bias[rows])
    return out


def _plain(m: nn.Module) -> bool:
    return isinstance(m, nn.Identity)


class SplitQKVAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections: (B, T, C) -> (B, T, C)."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        A = attn.qkv.out_features // 3  # the width of each of q, k and v
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        qkv, proj = attn.qkv, attn.proj
        # fold only where nothing sits between the bias and softmax / the projection
        self.folded = qkv.bias is not None and _plain(attn.k_norm) and _plain(attn.norm)
        self.q = _linear_from(qkv, slice(0, A))
        self.k = _linear_from(qkv, slice(A, 2 * A), bias=not self.folded)
        self.v = _linear_from(qkv, slice(2 * A, 3 * A), bias=not self.folded)
        self.proj = _linear_from(proj)
        if self.folded:  # b_proj + W_proj b_v, summed in float64
            with torch.no_grad():
                shift = proj.weight.double() @ qkv.bias[2 * A:].double()
                if proj.bias is not None:
                    shift += proj.bias.double()
            self.proj.bias = nn.Parameter(shift.to(proj.weight.dtype))
        self.q_norm, self.k_norm, self.norm = attn.q_norm, attn.k_norm, attn.norm

    def _heads(self, t: torch.Tensor, T: int) -> torch.Tensor:
        return t.reshape(-1, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                **kwargs: object) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("SplitQKVAttention exports unmasked attention only (ViT classifiers pass no mask)")
        T = x.shape[1]
        q = self.q_norm(self._heads(self.q(x), T)) * self.scale
        k = self.k_norm(self._heads(self.k(x), T))
        v = self._heads(self.v(x), T)
        a = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        y = (a @ v).transpose(1, 2).reshape(-1, T, self.num_heads * self.head_dim)
        return self.proj(self.norm(y))


def norm_class_token_only(model: nn.Module) -> bool:
    """Move a timm ViT's final norm behind its class-token pooling, in place; False where that would
    change the output (other pooling, an attention pool, an fc_norm, a subclass with its own head)."""
    from timm.models.vision_transformer import VisionTransformer

    if not (type(model) is VisionTransformer and model.global_pool == "token" and model.attn_pool is None
            and isinstance(model.fc_norm, nn.Identity) and isinstance(model.norm, nn.LayerNorm)):
        return False
    model.fc_norm, model.norm = model.norm, nn.Identity()
    return True


def rewrite_for_export(model: nn.Module) -> nn.Module:
    """Swap every plain timm `Attention` in `model.blocks` for `SplitQKVAttention` and apply
    `norm_class_token_only`, in place."""
    from timm.layers import Attention

    for blk in getattr(model, "blocks", []):
        attn = blk.attn
        if type(attn) is Attention and getattr(attn, "gate", None) is None:
            blk.attn = SplitQKVAttention(attn)
    norm_class_token_only(model)
    return model
