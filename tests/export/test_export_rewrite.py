"""Export-time rewrites compute the same function as the modules they replace."""
from __future__ import annotations

import copy

import pytest
import timm

import spvit_deploy.zoo  # noqa: F401  (registers vit_nano_patch4_32)
import torch
from torch import nn

from spvit_deploy.export.rewrite import SplitQKVAttention, norm_class_token_only, rewrite_for_export


def _attention(**kw) -> nn.Module:
    torch.manual_seed(0)
    a = timm.layers.Attention(96, num_heads=3, qkv_bias=True, **kw).eval()
    with torch.no_grad():
        for p in a.parameters():  # every bias and norm scale non-zero, so dropping one would show
            p.normal_(0, 0.2)
    return a


def test_split_attention_folds_key_and_value_biases():
    a = _attention()
    r = SplitQKVAttention(a).eval()
    assert r.folded and r.k.bias is None and r.v.bias is None and r.q.bias is not None
    x = torch.randn(2, 17, 96, dtype=torch.float64)
    ref = copy.deepcopy(a).double()(x)
    # float64: the folds are exact up to rounding (softmax rows sum to 1, a constant score shift cancels)
    assert (copy.deepcopy(r).double()(x) - ref).abs().max() < 1e-6
    assert (r(x.float()) - ref).abs().max() < 2e-5
    # the fold is what removes the value bias: the projection's bias changed by W_proj b_v
    b_v = a.qkv.bias[192:]
    assert torch.allclose(r.proj.bias, a.proj.bias + a.proj.weight @ b_v, atol=1e-5)
    assert not torch.allclose(r.proj.bias, a.proj.bias, atol=1e-3)


def test_split_attention_keeps_biases_behind_a_key_norm():
    a = _attention(qk_norm=True, norm_layer=nn.LayerNorm)
    r = SplitQKVAttention(a).eval()
    assert not r.folded and r.k.bias is not None and r.v.bias is not None
    x = torch.randn(2, 17, 96)
    assert (r(x) - a(x)).abs().max() < 1e-5


def test_final_norm_moves_behind_class_token_pooling():
    m = timm.create_model("vit_nano_patch4_32", num_classes=5).eval()
    with torch.no_grad():
        m.norm.weight.normal_(1, 0.5)
        m.norm.bias.normal_(0, 0.5)
    x = torch.randn(3, 3, 32, 32)
    ref = m(x)
    moved = copy.deepcopy(m)
    assert norm_class_token_only(moved)
    assert isinstance(moved.norm, nn.Identity) and isinstance(moved.fc_norm, nn.LayerNorm)
    assert (moved(x) - ref).abs().max() < 1e-5
    rewritten = rewrite_for_export(copy.deepcopy(m))
    assert (rewritten(x) - ref).abs().max() < 1e-5


@pytest.mark.parametrize("pool", ["avg", "map"])
def test_final_norm_stays_for_other_pooling(pool):
    m = timm.create_model("vit_nano_patch4_32", num_classes=5, global_pool=pool, fc_norm=False).eval()
    norm = m.norm
    assert not norm_class_token_only(m)
    assert m.norm is norm
