"""The plain networks' conv attention against the one oracle, `spvit_kernels.conv_attn_reference`:
the class-token ViT's `ConvAttention` and Swin's `MapConvAttention`, 3x3 and 1x1 (float64)."""
from __future__ import annotations

import pytest
import torch

from spvit_deploy.families.swin import MapConvAttention
from spvit_deploy.plain_layers import ConvAttention
from spvit_kernels import conv_attn_reference

GRID, C, D = (3, 5), 24, 8


def _randomized(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module.double().eval()


@pytest.mark.parametrize("ks", [3, 1])
@pytest.mark.parametrize("cls", [ConvAttention, MapConvAttention], ids=lambda c: c.__name__)
def test_plain_conv_attention_is_the_oracle(cls: type, ks: int) -> None:
    m = _randomized(ConvAttention(C, D, ks, GRID) if cls is ConvAttention else MapConvAttention(C, D, ks))
    shape = (2, 1 + GRID[0] * GRID[1], C) if cls is ConvAttention else (2, *GRID, C)
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad():
        want = conv_attn_reference(x, m.conv.weight, m.conv.bias, m.proj.weight, m.proj.bias, GRID)
        torch.testing.assert_close(m(x), want, atol=1e-12, rtol=1e-12)
