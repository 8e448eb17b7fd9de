"""The single-path layer against an independent reading of SPVIT.md's formulas."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from spvit_deploy.supernet import SinglePathAttention, randomize_supernet_state, set_all_gates, to_supernet


def _oracle_conv(attn: SinglePathAttention, u: torch.Tensor, op: str) -> torch.Tensor:
    """Branch output on patches, written from the formulas: per-position head mixing and shifted sums."""
    C, H = attn.dim, attn.dense_heads
    d = C // H
    gh, gw = attn.grid
    A = torch.softmax(attn.head_logits.double() / 0.01, dim=0)  # (H, 9)
    Wv = attn.msa.qkv.weight[2 * C:].double()
    bv = attn.msa.qkv.bias[2 * C:].double()
    Wo = attn.msa.proj.weight.double()
    V = [sum(A[h, k] * Wv[h * d:(h + 1) * d] for h in range(H)) for k in range(9)]
    beta = [sum(A[h, k] * bv[h * d:(h + 1) * d] for h in range(H)) for k in range(9)]
    O = [sum(A[h, k] * Wo[:, h * d:(h + 1) * d] for h in range(H)) for k in range(9)]
    B = u.shape[0]
    grid = u[:, 1:].double().reshape(B, gh, gw, C)
    if op == "conv1x1":
        pre = grid @ V[4].T + beta[4]
        proj = O[4]
        bn = attn.bn_1x1
    else:
        pre = torch.zeros(B, gh, gw, d, dtype=torch.float64)
        for k in range(9):
            i, j = k % 3, k // 3  # position k sits at row i, column j
            dy, dx = i - 1, j - 1
            shifted = torch.zeros_like(grid)
            ys, xs = slice(max(0, -dy), gh - max(0, dy)), slice(max(0, -dx), gw - max(0, dx))
            yt, xt = slice(max(0, dy), gh - max(0, -dy)), slice(max(0, dx), gw - max(0, -dx))
            shifted[:, ys, xs] = grid[:, yt, xt]
            pre = pre + shifted @ V[k].T
        pre = pre + sum(beta)
        proj = sum(O)
        bn = attn.bn_3x3
    y = (pre - bn.running_mean.double()) / torch.sqrt(bn.running_var.double() + bn.eps)
    y = torch.relu(y * bn.weight.double() + bn.bias.double())
    return (y @ proj.T + attn.msa.proj.bias.double()).reshape(B, gh * gw, C)


@pytest.mark.parametrize("op, code", [("conv3x3", [1.0, 1.0, 0.0]), ("conv1x1", [1.0, 0.0, 0.0])])
def test_conv_branches_match_formulas(tiny_dense, op: str, code: list[float]) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense)).eval()
    g = torch.Generator().manual_seed(1)
    randomize_supernet_state(sn, g)
    attn = sn.blocks[2].attn
    with torch.no_grad():
        attn.head_logits.copy_(torch.randn(attn.head_logits.shape, generator=g) * 0.02)
        attn.msa.qkv.bias.copy_(torch.randn(attn.msa.qkv.bias.shape, generator=g))
    u = torch.randn(2, 17, 192, generator=g)
    attn.gates.fix(code)
    with torch.no_grad():
        out = attn(u)
        expect = _oracle_conv(attn, u, op)
    assert torch.equal(out[:, 0], u[:, 0])  # class token passed through
    assert (out[:, 1:].double() - expect).abs().max() < 1e-5


def test_skip_passes_class_token_only(tiny_dense) -> None:
    attn = to_supernet(copy.deepcopy(tiny_dense)).eval().blocks[0].attn
    attn.gates.fix([0.0, 0.0, 0.0])
    u = torch.randn(1, 17, 192)
    out = attn(u)
    assert torch.equal(out[:, 0], u[:, 0]) and not out[:, 1:].any()


def test_all_gates_on_is_dense(tiny_dense) -> None:
    sn = set_all_gates(to_supernet(copy.deepcopy(tiny_dense)), True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(sn(x), tiny_dense(x))


def test_threshold_gates_at_init_are_dense(tiny_dense) -> None:
    """Logits start at 1.5 (p = 0.82): evaluation keeps everything."""
    sn = to_supernet(copy.deepcopy(tiny_dense)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(sn(x), tiny_dense(x))


def test_training_sample_is_binary_with_gradients(tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense)).train()
    torch.manual_seed(0)
    with torch.no_grad():
        for blk in sn.blocks:
            blk.attn.gates.logits.fill_(0.0)
            blk.mlp.gates.logits.fill_(0.0)
    out = sn(torch.randn(2, 3, 64, 64))
    out.square().mean().backward()
    for blk in sn.blocks:
        assert set(blk.attn.last_gates.unique().tolist()) <= {0.0, 1.0}
        assert blk.mlp.gates.logits.grad is not None and blk.mlp.gates.logits.grad.abs().sum() > 0
    assert any(blk.attn.gates.logits.grad.abs().sum() > 0 for blk in sn.blocks)
    assert sn.blocks[0].attn.head_logits.grad is not None


def test_cheaper_gates_detached_when_costlier_on(tiny_dense) -> None:
    attn = to_supernet(copy.deepcopy(tiny_dense)).train().blocks[0].attn
    with torch.no_grad():
        attn.gates.logits.fill_(4.0)
    for idx, flows in ((0, False), (1, False), (2, True)):
        attn.gates.logits.grad = None
        torch.manual_seed(0)  # with this seed every sample is 1
        g = attn.nested_gates()
        assert g.tolist() == [1.0, 1.0, 1.0]
        g[idx].backward()
        grad = attn.gates.logits.grad
        assert (grad is not None and grad.abs().sum() > 0) == flows, idx


def test_eval_gates_threshold_at_half(tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense)).eval()
    gates = sn.blocks[0].mlp.gates
    with torch.no_grad():
        gates.logits.copy_(torch.linspace(-1, 1, gates.logits.numel()))
    assert torch.equal(gates.sample(), (gates.logits > 0).float())
    assert F.relu(gates.logits).count_nonzero() == gates.kept().sum()
