"""Pure-PyTorch reference for SPViT conv blocks: the one oracle of the op, which the fused Triton
kernels (tests, benchmark baseline, CPU fallback), the TensorRT plugin's reference op
(`spvit_deploy.passes.plugins.conv_attn_numpy`, a wrapper of it) and the plain networks' tests
all check against (any device, any dtype).

Names. The op is *conv attention*: attn(u) = ReLU(conv_kxk(u) + b) @ proj_weight.T + proj_bias on the
patch grid, the class token passed through, k = 3 or 1 (SPViT's conv3x3 / conv1x1 choices of a head).
Python spells it `conv_attn` in functions (`conv_attn_reference`, `fused_conv_attn`,
`conv_attn_trt_kernel`, `insert_conv_attn_plugins`) and `ConvAttention` in modules (`plain_layers.
ConvAttention`; Swin's `MapConvAttention` on a map). On the wire it is the ONNX op type and TensorRT
plugin `SpvitConvAttn` in domain and namespace `spvit` (`spvit::SpvitConvAttn`, version 1): graphs and
engines already written name it, so it stays. A *conv block* is the attention half of a transformer
block that holds it, x + conv_attn(LN(x)): `conv_block_reference`, `fused_conv_block`,
`spvit_deploy.fused.FusedConvBlock`.

Tokens are (B, 1+N, C): row 0 is the class token, rows 1..N a row-major (gh, gw) grid; a model
without a class token (Swin) passes its map as (B, N, C) or (B, gh, gw, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Grid = tuple[int, int]


def patches_to_image(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, N, C) patch tokens -> (B, C, gh, gw) feature map."""
    batch, n, c = tokens.shape
    gh, gw = grid
    if n != gh * gw:
        raise ValueError(f"{n} patch tokens do not fill a {gh}x{gw} grid")
    return tokens.transpose(1, 2).reshape(batch, c, gh, gw)


def conv_attn_reference(
    u: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    grid: Grid,
    hidden_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """attn(u) of a conv block: (B, 1+N, C) -> (B, 1+N, C), class token passed through; a map
    without class token, (B, N, C) or (B, gh, gw, C), keeps its shape.

    Patches: ReLU(conv2d(u, conv_weight (d, C, k, k), conv_bias, padding=k//2)) as
    (B, N, d) tokens, then @ proj_weight (C, d).T + proj_bias. `hidden_dtype` rounds those tokens
    to it between the two (what a kernel storing them in its input's dtype does, evaluated wider).
    """
    k = conv_weight.shape[-1]
    tokens = u.reshape(u.shape[0], -1, u.shape[-1])
    prefix = tokens.shape[1] - grid[0] * grid[1]
    image = patches_to_image(tokens[:, prefix:], grid)
    y = F.relu(F.conv2d(image, conv_weight, conv_bias, padding=k // 2))
    if hidden_dtype is not None:
        y = y.to(hidden_dtype).to(u.dtype)
    patches = F.linear(y.flatten(2).transpose(1, 2), proj_weight, proj_bias)
    return torch.cat([tokens[:, :prefix], patches], dim=1).reshape(u.shape)


def conv_block_reference(
    x: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    ln_eps: float,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor,
    grid: Grid,
) -> torch.Tensor:
    """Attention half of a conv block: x + attn(LayerNorm(x)), (B, 1+N, C) -> (B, 1+N, C)."""
    u = F.layer_norm(x, (x.shape[-1],), ln_weight, ln_bias, ln_eps)
    return x + conv_attn_reference(u, conv_weight, conv_bias, proj_weight, proj_bias, grid)
