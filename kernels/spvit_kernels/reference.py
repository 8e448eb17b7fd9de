"""Pure-PyTorch reference for SPViT conv blocks: the test oracle, the benchmark
baseline and the CPU fallback of the fused Triton kernels (any device, any dtype).

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
) -> torch.Tensor:
    """attn(u) of a conv block: (B, 1+N, C) -> (B, 1+N, C), class token passed through; a map
    without class token, (B, N, C) or (B, gh, gw, C), keeps its shape.

    Patches: ReLU(conv2d(u, conv_weight (d, C, k, k), conv_bias, padding=k//2)) as
    (B, N, d) tokens, then @ proj_weight (C, d).T + proj_bias.
    """
    k = conv_weight.shape[-1]
    tokens = u.reshape(u.shape[0], -1, u.shape[-1])
    prefix = tokens.shape[1] - grid[0] * grid[1]
    image = patches_to_image(tokens[:, prefix:], grid)
    y = F.relu(F.conv2d(image, conv_weight, conv_bias, padding=k // 2))
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
