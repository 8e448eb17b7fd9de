"""Pad trimmed FFN widths up to a multiple with zero-weight hidden units (the output is unchanged).

A padded unit has zero fc1 weights and bias, so its pre-activation is 0 and GELU(0) = 0, and
zero fc2 weights, so it adds exact zeros. Some kernels prefer widths that are multiples of 8-64.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import SpvitError


def padded_width(width: int, multiple: int) -> int:
    return -(-width // multiple) * multiple


@torch.no_grad()
def pad_ffn_widths(model: nn.Module, multiple: int, inplace: bool = False) -> nn.Module:
    """A copy of `model` whose FFN hidden widths are rounded up to `multiple` (0-width FFNs stay)."""
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise SpvitError(f"pad width multiple must be a positive integer, got {multiple!r}")
    model = model if inplace else copy.deepcopy(model)
    from ..families import family_of

    for blk in family_of(model).blocks(model):
        mlp = blk.mlp
        fc1, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)
        if not isinstance(fc1, nn.Linear) or not isinstance(fc2, nn.Linear):
            continue  # BiasOnly (every unit pruned): nothing to pad
        w = fc1.out_features
        new_w = padded_width(w, multiple)
        if new_w == w:
            continue
        f1 = nn.Linear(fc1.in_features, new_w, bias=fc1.bias is not None, device=fc1.weight.device,
                       dtype=fc1.weight.dtype)
        f2 = nn.Linear(new_w, fc2.out_features, bias=fc2.bias is not None, device=fc2.weight.device,
                       dtype=fc2.weight.dtype)
        f1.weight.zero_()
        f1.weight[:w] = fc1.weight
        if fc1.bias is not None:
            f1.bias.zero_()
            f1.bias[:w] = fc1.bias
        f2.weight.zero_()
        f2.weight[:, :w] = fc2.weight
        if fc2.bias is not None:
            f2.bias.copy_(fc2.bias)
        mlp.fc1, mlp.fc2 = f1, f2
    return model
