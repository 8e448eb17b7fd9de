"""MAC/param accounting against torch's FLOP counter and the paper's figures."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spvit_deploy.macs import arch_stats, cost
from spvit_deploy.materialization import materialize
from spvit_deploy.models import create_dense, vit_dims
from spvit_deploy.spec import load_spec
from spvit_deploy.supernet import fix_gates, to_supernet


def _counted_macs(model: torch.nn.Module, img: int) -> float:
    for blk in model.blocks:
        if hasattr(blk.attn, "fused_attn"):
            blk.attn.fused_attn = False  # SDPA on CPU is not counted; the explicit matmuls are
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, img, img))
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name, arch", [("deit_t", "paper:deit_tiny"), ("deit_s", "paper:deit_small")])
def test_counts_match_flop_counter(name: str, arch: str) -> None:
    spec = load_spec(arch)
    dense = create_dense(name)
    dims = vit_dims(dense)
    assert cost(dims).macs == pytest.approx(_counted_macs(dense, 224), rel=0.01)
    plain = materialize(fix_gates(to_supernet(copy.deepcopy(dense)), spec).eval(), spec)
    assert cost(dims, spec).macs == pytest.approx(_counted_macs(plain, 224), rel=0.01)
    assert cost(dims, spec).params == sum(p.numel() for p in plain.parameters())


def test_mixed_ops_match_flop_counter(tiny_dense, tiny_spec) -> None:
    plain = materialize(fix_gates(to_supernet(copy.deepcopy(tiny_dense)), tiny_spec).eval(), tiny_spec)
    assert cost(vit_dims(tiny_dense), tiny_spec).macs == pytest.approx(_counted_macs(plain, 64), rel=0.01)


def test_deit_base_reproduces_paper() -> None:
    s = arch_stats("deit_b", "paper:deit_base")
    assert 17.4 <= s["dense"]["gmacs"] <= 17.7 and 86.5e6 <= s["dense"]["params"] <= 86.7e6
    assert 8.2 <= s["compressed"]["gmacs"] <= 8.6 and s["compressed"]["params"] <= 42.5e6
    assert len(s["blocks"]) == 12


def test_img_size_scales_macs() -> None:
    small = arch_stats("deit_b", "paper:deit_base", img_size=112)
    assert small["dense"]["gmacs"] < 17.6 / 3.5
