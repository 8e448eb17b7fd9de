"""Pinning gates, deriving specs, and the differentiable MAC count."""
from __future__ import annotations

import copy

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.macs import cost
from spvit_deploy.models import vit_dims
from spvit_deploy.supernet import derive_spec, fix_gates, supernet_macs, to_supernet


def test_derive_spec_round_trips_pinned_gates(tiny_dense, tiny_spec) -> None:
    sn = fix_gates(to_supernet(copy.deepcopy(tiny_dense)), tiny_spec)
    derived = derive_spec(sn, tiny_spec.model, source="test")
    assert derived == tiny_spec


def test_derive_spec_from_logits(tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense))
    with torch.no_grad():
        sn.blocks[0].attn.gates.logits.copy_(torch.tensor([1.0, -1.0, 1.0]))  # nested: 3x3 off => msa off
        sn.blocks[1].mlp.gates.logits[:700] = -2.0
    spec = derive_spec(sn, "deit_tiny_patch16_224")
    assert spec.blocks[0].attn == "conv1x1"
    assert spec.blocks[1].ffn_kept == tuple(range(700, 768))


def test_supernet_macs_matches_cost(tiny_dense, tiny_spec) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense))
    dims = vit_dims(sn)
    assert float(supernet_macs(sn).detach()) == pytest.approx(cost(dims).macs, rel=1e-6)  # init: all on
    fix_gates(sn, tiny_spec)
    assert float(supernet_macs(sn).detach()) == pytest.approx(cost(dims, tiny_spec).macs, rel=1e-6)


def test_supernet_macs_is_differentiable(tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense))
    macs = supernet_macs(sn)
    macs.backward()
    blk = sn.blocks[0]
    assert blk.mlp.gates.logits.grad.gt(0).all()  # keeping a unit costs MACs
    assert blk.attn.gates.logits.grad.abs().sum() > 0


def test_fix_gates_rejects_mismatched_spec(tiny_dense, tiny_spec) -> None:
    from dataclasses import replace

    sn = to_supernet(copy.deepcopy(tiny_dense))
    with pytest.raises(SpvitError, match="has 11 blocks"):
        fix_gates(sn, replace(tiny_spec, blocks=tiny_spec.blocks[:11]))
