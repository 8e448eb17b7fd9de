"""The single-path search form (conv branches from the MSA's values) against the reference conv
form: same outputs, same gradients, same BatchNorm updates, for both kernel position orders."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from timm.layers import Attention

from spvit_deploy.supernet import SinglePathAttention
from spvit_deploy.supernet.layers import DEIT_POSITIONS, attention_heads

SWIN_POSITIONS = (4, 0, 1, 2, 3, 5, 6, 7, 8)  # column 0 is the centre (SPVIT-SWIN.md)
GRID = (3, 5)  # not square: a swapped row/column shows


def _layer(positions: tuple[int, ...], heads: int = 3, dim: int = 48, seed: int = 0) -> SinglePathAttention:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = SinglePathAttention(Attention(dim, num_heads=heads, qkv_bias=True), GRID, positions=positions)
    with torch.no_grad():
        layer.msa.qkv.bias.copy_(torch.randn(layer.msa.qkv.bias.shape, generator=g))  # borders see the bias
        layer.msa.proj.bias.copy_(torch.randn(layer.msa.proj.bias.shape, generator=g))
        layer.head_logits.copy_(torch.randn(layer.head_logits.shape, generator=g) * 0.02)  # distinct heads per column
        layer.gates.logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
        for bn in (layer.bn_3x3, layer.bn_1x1):
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.1)
    return layer.train()


def _run(layer: SinglePathAttention, x: torch.Tensor, shared: bool, bn_train: bool) -> torch.Tensor:
    layer.shared_values = shared
    layer.bn_3x3.train(bn_train)
    layer.bn_1x1.train(bn_train)
    torch.manual_seed(7)  # the same gate samples in both forms
    return layer(x)


def _grads(layer: SinglePathAttention) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}


# gate logits whose samples (seed 7) pick each op, so each branch's gradients are compared
OPS = {"msa": [6.0, 6.0, 6.0], "conv3x3": [6.0, 6.0, -6.0], "conv1x1": [6.0, -6.0, -6.0]}
CODES = {"msa": [1.0, 1.0, 1.0], "conv3x3": [1.0, 1.0, 0.0], "conv1x1": [1.0, 0.0, 0.0]}


@pytest.mark.parametrize("positions", [DEIT_POSITIONS, SWIN_POSITIONS], ids=["deit", "swin"])
@pytest.mark.parametrize("bn_train", [False, True], ids=["bn-eval", "bn-train"])
@pytest.mark.parametrize("op", list(OPS))
def test_shared_values_equal_reference(positions: tuple[int, ...], bn_train: bool, op: str) -> None:
    ref = _layer(positions)
    with torch.no_grad():
        ref.gates.logits.copy_(torch.tensor(OPS[op]))
    new = copy.deepcopy(ref)
    x = torch.randn(2, 1 + GRID[0] * GRID[1], 48, generator=torch.Generator().manual_seed(3))
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    out_ref, out_new = _run(ref, x, False, bn_train), _run(new, x, True, bn_train)
    assert ref.last_gates.tolist() == new.last_gates.tolist() == CODES[op]
    assert (out_ref - out_new).abs().max() < 1e-5
    (out_ref * w).sum().backward()
    (out_new * w).sum().backward()
    g_ref, g_new = _grads(ref), _grads(new)
    active = {"msa": "msa.qkv.weight", "conv3x3": "bn_3x3.weight", "conv1x1": "bn_1x1.weight"}[op]
    assert g_ref[active].abs().max() > 0 and g_ref["gates.logits"].abs().max() > 0
    assert op == "msa" or g_ref["head_logits"].abs().max() > 0
    assert g_ref.keys() == g_new.keys()
    # relative 1e-4; a gradient that vanishes analytically (the value bias under training-mode
    # BatchNorm) is held to the layer's gradient scale instead of its own rounding noise
    floor = 1e-3 * max(float(g.abs().max()) for g in g_ref.values())
    for name in g_ref:
        scale = max(float(g_ref[name].abs().max()), floor)
        assert float((g_ref[name] - g_new[name]).abs().max()) / scale < 1e-4, name
    for a, b in zip(ref.buffers(), new.buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)  # same BatchNorm statistics


def test_every_branch_contributes() -> None:
    """The comparison above is only meaningful if both conv branches carry weight."""
    layer = _layer(DEIT_POSITIONS)
    x = torch.randn(2, 16, 48)
    with torch.no_grad():
        f3, f1 = layer.shared_conv_features(layer.msa.qkv(x)[:, 1:, 96:])
        O = layer.position_weights()[2]
        c3, c1 = F.linear(f3, O.sum(0), layer.msa.proj.bias), F.linear(f1, O[layer.centre], layer.msa.proj.bias)
        r3, r1 = layer.conv_branch(x[:, 1:], "conv3x3"), layer.conv_branch(x[:, 1:], "conv1x1")
    assert (c3 - r3).abs().max() < 1e-5 and (c1 - r1).abs().max() < 1e-5
    assert (c3 - c1).abs().max() > 1e-2


@pytest.mark.parametrize("wrong", [tuple(3 * (p % 3) + p // 3 for p in DEIT_POSITIONS), SWIN_POSITIONS],
                         ids=["row-major", "other-family-order"])
def test_wrong_position_order_is_seen(wrong: tuple[int, ...]) -> None:
    ref = _layer(DEIT_POSITIONS)
    bad = copy.deepcopy(ref)
    bad.positions = wrong
    x = torch.randn(2, 16, 48)
    with torch.no_grad():
        good = ref.conv_branch(x[:, 1:], "conv3x3")
        f3, _ = bad.shared_conv_features(bad.msa.qkv(x)[:, 1:, 96:])
        c3 = F.linear(f3, bad.position_weights()[2].sum(0), bad.msa.proj.bias)
    assert (c3 - good).abs().max() > 1e-3


@pytest.mark.parametrize("fused", [True, False])
def test_attention_heads_is_timms_forward(fused: bool) -> None:
    attn = Attention(48, num_heads=3, qkv_bias=True).eval()
    attn.fused_attn = fused
    x = torch.randn(2, 16, 48)
    with torch.no_grad():
        assert (attn.proj(attention_heads(attn, x, attn.qkv(x))) - attn(x)).abs().max() < 1e-6


def test_masked_attention_uses_reference_form() -> None:
    layer = _layer(DEIT_POSITIONS)
    x = torch.randn(1, 16, 48)
    mask = torch.zeros(16, 16)
    mask[:, -1] = float("-inf")
    torch.manual_seed(7)
    a = layer(x, attn_mask=mask)
    layer.shared_values = False
    torch.manual_seed(7)
    assert torch.allclose(a, layer(x, attn_mask=mask), atol=1e-6)


def test_ffn_gates_folded_into_fc2_equal_the_gated_activations() -> None:
    from timm.layers import Mlp

    from spvit_deploy.supernet.layers import GatedMlp

    torch.manual_seed(0)
    mlp = GatedMlp(Mlp(48, 96)).train()
    with torch.no_grad():
        mlp.gates.logits.copy_(torch.randn(96))
    x = torch.randn(2, 16, 48)
    torch.manual_seed(5)
    folded = mlp(x)
    (folded.square().sum()).backward()
    g_fold = {n: p.grad.clone() for n, p in mlp.named_parameters()}
    mlp.zero_grad()
    torch.manual_seed(5)
    g = mlp.gates.sample()
    explicit = mlp.fc2(mlp.act(mlp.fc1(x)) * g)
    (explicit.square().sum()).backward()
    assert 0 < int(g.sum()) < 96 and (folded - explicit).abs().max() < 1e-5
    for n, p in mlp.named_parameters():
        assert (p.grad - g_fold[n]).abs().max() <= 1e-4 * p.grad.abs().max().clamp_min(1e-6), n
