"""Fused conv blocks for PyTorch inference: LayerNorm + conv + ReLU + projection + residual in one
Triton kernel (`spvit_kernels`), swapped into a materialized network in place.

On CUDA the kernel runs compiled; on CPU it runs under Triton's interpreter when
TRITON_INTERPRET=1 was set before the kernels were imported, else the PyTorch reference runs.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .errors import SpvitError, require
from .plain import ConvAttention
from .verification import Check, VerifyContext, max_abs_diff, register_stage


class FusedConvBlock(nn.Module):
    """A transformer block whose attention half is one fused conv kernel; the FFN half is unchanged."""

    def __init__(self, block: nn.Module, config: str | None = None) -> None:
        super().__init__()
        kernels = require("spvit_kernels", "triton", "the fused kernels (spvit_kernels + triton)")
        if not isinstance(block.attn, ConvAttention):
            raise SpvitError("only conv blocks can be fused")
        if not isinstance(block.ls1, nn.Identity):
            raise SpvitError("blocks with LayerScale cannot be fused yet")
        self.norm1, self.attn = block.norm1, block.attn
        self.norm2, self.mlp, self.ls2, self.drop_path2 = block.norm2, block.mlp, block.ls2, block.drop_path2
        self.config = config
        self.register_buffer("packed_conv", kernels.pack_conv_weight(self.attn.conv.weight.detach()), persistent=False)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import spvit_kernels

        a = self.attn
        x = spvit_kernels.fused_conv_block(
            x, self.norm1.weight, self.norm1.bias, self.norm1.eps, self.packed_conv, a.conv.bias,
            a.proj.weight, a.proj.bias, a.grid, config=self.config,
        )
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class FusedMapConvBlock(nn.Module):
    """A deployed Swin conv block (`PlainSwinBlock` with a `MapConvAttention`) whose attention half is one
    fused kernel on the (B, R, R, C) map (no class token); the FFN half is unchanged."""

    def __init__(self, block: nn.Module, config: str | None = None) -> None:
        super().__init__()
        kernels = require("spvit_kernels", "triton", "the fused kernels (spvit_kernels + triton)")
        self.norm1, self.attn, self.norm2, self.mlp = block.norm1, block.attn, block.norm2, block.mlp
        self.config = config
        self.register_buffer("packed_conv", kernels.pack_conv_weight(self.attn.conv.weight.detach()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import spvit_kernels

        B, H, W, C = x.shape
        a = self.attn
        x = spvit_kernels.fused_conv_block(
            x.contiguous(), self.norm1.weight, self.norm1.bias, self.norm1.eps, self.packed_conv, a.conv.bias,
            a.proj.weight, a.proj.bias, (H, W), config=self.config,
        ).reshape(B, -1, C)
        return (x + self.mlp(self.norm2(x))).reshape(B, H, W, C)


def _fused(block: nn.Module, config: str | None) -> nn.Module | None:
    from .families.swin import MapConvAttention, PlainSwinBlock

    if isinstance(getattr(block, "attn", None), ConvAttention):
        return FusedConvBlock(block, config=config)
    if isinstance(block, PlainSwinBlock) and isinstance(block.attn, MapConvAttention):
        return FusedMapConvBlock(block, config=config)
    return None


def fuse_conv_blocks(model: nn.Module, config: str | None = None) -> int:
    """Swap every conv block of a plain network (any family) for its fused form, in place; returns how many."""
    from .families import family_of

    n = 0
    for path in family_of(model).block_paths(model):
        fused = _fused(model.get_submodule(path), config)
        if fused is not None:
            parent, index = path.rsplit(".", 1)
            model.get_submodule(parent)[int(index)] = fused  # blocks sit in an nn.Sequential
            n += 1
    return n


def prepare_interpreter() -> None:
    """On a machine without CUDA, run the kernels in Triton's interpreter (must precede `import triton`)."""
    import sys

    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return
    if "triton" in sys.modules:
        raise SpvitError("no CUDA device: set TRITON_INTERPRET=1 before starting Python to run the fused "
                         "kernels in Triton's CPU interpreter")
    os.environ["TRITON_INTERPRET"] = "1"


def kernel_path(x: torch.Tensor) -> str:
    """Which implementation the fused blocks run on `x`."""
    import spvit_kernels

    if x.is_cuda:
        return "triton-cuda"
    return "triton-interpreter" if spvit_kernels.use_triton(x) else "pytorch-reference"


@register_stage("fused")
def fused_stage(ctx: VerifyContext) -> Check:
    """The plain network with fused conv blocks vs the plain network (fp32)."""
    import copy

    prepare_interpreter()
    model = copy.deepcopy(ctx.plain).eval()
    n = fuse_conv_blocks(model)
    with torch.no_grad():
        out = model(ctx.inputs)
    d = max_abs_diff(out, ctx.reference)
    tol = 1e-4
    return Check("fused", d, d <= tol,
                 {"fused_blocks": n, "path": kernel_path(ctx.inputs), "tolerance": tol})
