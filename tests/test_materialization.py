"""Materialize: the plain network equals the pinned supernet and keeps nothing unused."""
from __future__ import annotations

import copy

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.macs import cost
from spvit_deploy.materialization import materialize
from spvit_deploy.models import vit_dims
from spvit_deploy.plain import BiasOnly, ConvAttention, SkipAttention
from spvit_deploy.spec import load_spec
from spvit_deploy.supernet import fix_gates, randomize_supernet_state, to_supernet

from spvit_testing import TINY, random_spec


def _pinned(dense, spec, seed=0):
    sn = to_supernet(copy.deepcopy(dense))
    randomize_supernet_state(sn, torch.Generator().manual_seed(seed))
    return fix_gates(sn, spec).eval()


@pytest.mark.parametrize("ops", [["conv3x3"], ["conv1x1"], ["skip"], ["msa"], ["conv3x3", "conv1x1", "skip", "msa"]])
@pytest.mark.parametrize("batch", [1, 3])
def test_plain_equals_pinned_supernet(tiny_dense, ops, batch) -> None:
    spec = random_spec(TINY, 12, 768, ops, 64, num_classes=10, seed=len(ops), empty_ffn_block=7)
    sn = _pinned(tiny_dense, spec)
    plain = materialize(sn, spec)
    x = torch.randn(batch, 3, 64, 64)
    with torch.no_grad():
        feats_sn, feats_plain = sn.forward_features(x), plain.forward_features(x)
        assert (feats_sn - feats_plain).abs().max() <= 1e-5
        assert (sn(x) - plain(x)).abs().max() <= 1e-5


def test_plain_has_only_standard_layers(tiny_dense, tiny_spec) -> None:
    plain = materialize(_pinned(tiny_dense, tiny_spec), tiny_spec)
    keys = plain.state_dict().keys()
    assert not any("gates" in k or "head_logits" in k or "bn_" in k or "msa" in k for k in keys)
    for blk, b in zip(plain.blocks, tiny_spec.blocks):
        if b.attn in ("conv3x3", "conv1x1"):
            assert isinstance(blk.attn, ConvAttention)
            k = 3 if b.attn == "conv3x3" else 1
            assert tuple(blk.attn.conv.weight.shape) == (64, 192, k, k)
            assert tuple(blk.attn.proj.weight.shape) == (192, 64)
        elif b.attn == "skip":
            assert isinstance(blk.attn, SkipAttention) and not list(blk.attn.parameters())
        if b.ffn_width:
            assert blk.mlp.fc1.out_features == b.ffn_width == blk.mlp.fc2.in_features
        else:
            assert isinstance(blk.mlp, BiasOnly)
    n_params = sum(p.numel() for p in plain.parameters())
    assert n_params == cost(vit_dims(tiny_dense), tiny_spec).params


def test_trimmed_ffn_keeps_the_right_units(tiny_dense, tiny_spec) -> None:
    sn = _pinned(tiny_dense, tiny_spec)
    plain = materialize(sn, tiny_spec)
    kept = list(tiny_spec.blocks[0].ffn_kept)
    assert torch.equal(plain.blocks[0].mlp.fc1.weight, sn.blocks[0].mlp.fc1.weight[kept])
    assert torch.equal(plain.blocks[0].mlp.fc2.weight, sn.blocks[0].mlp.fc2.weight[:, kept])


def test_materialize_rejects_other_resolution(tiny_dense, tiny_spec) -> None:
    sn = _pinned(tiny_dense, tiny_spec)
    with pytest.raises(SpvitError, match="img_size 96"):
        materialize(sn, tiny_spec.with_overrides(img_size=96))


def test_published_deit_tiny_materializes(tiny_dense) -> None:
    spec = load_spec("paper:deit_tiny").with_overrides(img_size=64, num_classes=10)
    plain = materialize(_pinned(tiny_dense, spec), spec)
    assert [type(b.attn).__name__ for b in plain.blocks][:3] == ["ConvAttention", "ConvAttention", "Attention"]
