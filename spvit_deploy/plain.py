"""The plain network a spec describes: timm's VisionTransformer with standard layers swapped in.

Conv blocks: Conv2d (BatchNorm folded) C->d, ReLU, Linear d->C on the patch grid, the class
token passed through; skip blocks: no attention weights; FFNs: trimmed fc1/fc2.
`build_plain(spec)` needs nothing but the spec; weights are loaded into it afterwards.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import SpvitError
from .spec import CONV_KERNEL, ArchSpec


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


class BiasOnly(nn.Module):
    """An FFN whose every hidden unit was pruned: its output is fc2's bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + self.bias


def build_plain(spec: ArchSpec, device: str | torch.device | None = None) -> nn.Module:
    """An uninitialised-weights plain network for `spec` (load a state dict into it)."""
    import timm

    from .models import check_supported, resolve_model_name

    name = resolve_model_name(spec.model)
    model = timm.create_model(
        name, pretrained=False, num_classes=spec.num_classes, img_size=spec.img_size, device=device
    )
    check_supported(model, spec.model)
    spec.validate_against(len(model.blocks), [b.mlp.fc1.out_features for b in model.blocks])
    grid = tuple(model.patch_embed.grid_size)
    C = model.embed_dim
    for blk, b in zip(model.blocks, spec.blocks):
        d = C // blk.attn.num_heads
        if b.attn in CONV_KERNEL:
            blk.attn = ConvAttention(C, d, CONV_KERNEL[b.attn], grid).to(device)
        elif b.attn == "skip":
            blk.attn = SkipAttention()
        w = b.ffn_width
        if w == 0:
            blk.mlp = BiasOnly(C).to(device)
        else:
            blk.mlp.fc1 = nn.Linear(C, w, device=device)
            blk.mlp.fc2 = nn.Linear(w, C, device=device)
    model.spvit_spec = spec
    return model.eval()


def load_plain_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strictly load `state` into a plain model, with a one-line error on mismatch."""
    from .models import check_state_keys

    own = model.state_dict()
    wrong = check_state_keys(own, state, f"{where} does not match its arch spec")
    if wrong:
        k = wrong[0]
        raise SpvitError(
            f"{where} does not match its arch spec: {k} is {tuple(state[k].shape)}, spec wants {tuple(own[k].shape)}"
        )
    model.load_state_dict(state, strict=True)
