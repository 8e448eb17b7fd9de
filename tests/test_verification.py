"""verify with random weights: degenerate parameters (LayerScale gammas, zero biases) are redrawn, so a
branch mistake cannot hide below the tolerance."""
from __future__ import annotations

import pytest
import timm
import torch

import spvit_deploy.materialization as materialization
from spvit_deploy import verification
from spvit_deploy.verification import randomize_degenerate, verify

from spvit_testing import random_spec

DEIT3 = "deit3_small_patch16_224"


def test_degenerate_parameters_are_redrawn() -> None:
    m = timm.create_model(DEIT3, pretrained=False, img_size=32)
    names = randomize_degenerate(m, torch.Generator().manual_seed(0))
    assert {"cls_token", "blocks.0.ls1.gamma", "blocks.0.attn.qkv.bias", "blocks.0.norm1.weight"} <= set(names)
    assert "blocks.0.attn.qkv.weight" not in names and "pos_embed" not in names
    gamma = m.blocks[0].ls1.gamma.detach()
    assert 0.5 <= float(gamma.min()) and float(gamma.max()) < 1.5 and float(gamma.std()) > 0.1
    assert float(m.blocks[0].attn.qkv.bias.detach().abs().min()) > 0
    assert randomize_degenerate(m, torch.Generator().manual_seed(0)) == []  # nothing degenerate is left


def _off_by_a_little(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """Make materialize wrong by a relative 1e-3 in one conv block's weights (a mis-fold)."""
    real = materialization.materialize

    def wrong(supernet, spec):
        plain = real(supernet, spec)
        with torch.no_grad():
            plain.blocks[block].attn.conv.weight.mul_(1 + 1e-3)
        return plain

    monkeypatch.setattr(materialization, "materialize", wrong)


def test_layerscale_model_verifies_with_a_visible_diff() -> None:
    spec = random_spec(DEIT3, 12, 1536, ["conv3x3", "msa", "conv1x1", "skip"], 32, num_classes=10)
    rep = verify(DEIT3, spec)
    assert rep.ok
    assert rep.checks[1].max_abs_diff > 1e-8  # 6e-8 and below with gammas of 1e-6


def test_a_layerscale_branch_mistake_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = random_spec(DEIT3, 12, 1536, ["conv3x3", "msa", "conv1x1", "skip"], 32, num_classes=10)
    _off_by_a_little(monkeypatch, 0)
    assert not verify(DEIT3, spec).ok
    monkeypatch.setattr(verification, "randomize_degenerate", lambda model, generator: [])
    assert verify(DEIT3, spec).ok  # what the gammas of 1e-6 used to hide
