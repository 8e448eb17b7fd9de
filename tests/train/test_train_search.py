"""The search: the complexity loss reaches every gate; derived architectures land on the target."""
from __future__ import annotations

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.macs import cost, fixed_macs
from spvit_deploy.models import create_dense, dims_for
from spvit_deploy.supernet import supernet_macs, to_supernet
from spvit_deploy.train.config import config_for
from spvit_deploy.train.pipeline import resolve_target
from spvit_deploy.train.gate_search import complexity_loss, derive_for_target, is_gate_param

from train_testing import NANO


@pytest.fixture
def supernet() -> torch.nn.Module:
    torch.manual_seed(0)
    return to_supernet(create_dense(NANO, num_classes=10))


@pytest.mark.parametrize("ratio, sign", [(0.5, 1.0), (1.2, -1.0)])
def test_complexity_gradient_reaches_every_gate(supernet, ratio, sign) -> None:
    dense = float(supernet_macs(supernet).detach()) / 1e9
    loss, f = complexity_loss(supernet, ratio * dense, lam=10.0)
    assert float(f.detach()) == pytest.approx(dense) and float(loss.detach()) == pytest.approx(10.0 * ((ratio - 1) * dense) ** 2)
    loss.backward()
    for blk in supernet.blocks:
        for g in (blk.attn.gates.logits.grad, blk.mlp.gates.logits.grad):
            assert g is not None and bool((torch.sign(g) == sign).all())  # above the target: push every gate off
    assert supernet.blocks[0].mlp.fc1.weight.grad is None  # only gates enter the MACs


def test_gate_parameters_are_the_logits(supernet) -> None:
    names = [n for n, _ in supernet.named_parameters() if is_gate_param(n)]
    assert len(names) == 3 * len(supernet.blocks) and all("logits" in n for n in names)


@pytest.mark.parametrize("ratio", [0.12, 0.3, 0.5, 0.55, 0.8, 1.0])
def test_derived_architecture_lands_on_the_target(supernet, ratio) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for blk in supernet.blocks:
            blk.attn.gates.logits.copy_(torch.randn(3, generator=g) * 2)
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))
    dims = dims_for(NANO, num_classes=10)
    target = ratio * cost(dims).macs
    spec = derive_for_target(supernet, NANO, target)
    got = cost(dims, spec).macs
    assert abs(got - target) <= max(0.02 * target, 2 * dims.blocks[0].tokens * dims.embed_dim)  # within one FFN unit
    assert spec.extra["target_gmacs"] == pytest.approx(target / 1e9, abs=1e-6)


def test_paper_rule_is_kept_when_it_is_close_enough(supernet) -> None:
    dims = dims_for(NANO, num_classes=10)
    spec = derive_for_target(supernet, NANO, cost(dims).macs * 0.99)  # every gate on: the dense model, 1% off
    assert spec.extra["rule"] == "p > 0.5" and spec.ops == ["msa"] * 6


def test_targets_outside_the_reachable_range(digits) -> None:
    dims = dims_for(NANO, num_classes=10)
    with pytest.raises(SpvitError, match="above the dense model"):
        resolve_target(config_for(NANO, str(digits), target_gmacs=1.0), dims)
    with pytest.raises(SpvitError, match="below the smallest reachable"):
        resolve_target(config_for(NANO, str(digits), target_gmacs=fixed_macs(dims) / 2e9), dims)
    with pytest.raises(SpvitError, match="give a target"):
        resolve_target(config_for(NANO, str(digits)), dims)
    assert resolve_target(config_for(NANO, str(digits), target_ratio=0.5), dims) == 0.5 * cost(dims).macs
