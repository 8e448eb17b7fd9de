"""Swin through the model-family layer: MACs and params of the published archs (SPVIT-SWIN.md
section 5), dense == supernet == materialized on a tiny Swin, the single-path search form against
the reference conv form, the kernel position table, and the plain network's structure."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from spvit_deploy import macs as M
from spvit_deploy.errors import SpvitError
from spvit_deploy.families import family_of
from spvit_deploy.families.swin import (PlainSwinBlock, SwinSinglePathAttention, SwinSupernetBlock,
                                        window_heads)
from spvit_deploy.materialization import materialize
from spvit_deploy.models import create_dense, dims_for
from spvit_deploy.spec import ArchSpec, BlockSpec, load_spec
from spvit_deploy.supernet import fix_gates, randomize_supernet_state, set_all_gates, to_supernet
from spvit_deploy.supernet.build import derive_spec, supernet_blocks, supernet_macs
from spvit_deploy.verification import randomize_degenerate

NANO = "swin_nano_patch4_window4_64"
OPS = ["conv3x3", "skip", "conv1x1", "msa", "skip", "conv3x3"]  # every op, in shifted and unshifted blocks


@pytest.fixture(scope="module")
def dense() -> nn.Module:
    torch.manual_seed(0)
    m = create_dense(NANO)
    randomize_degenerate(m, torch.Generator().manual_seed(1))
    return m.eval()


def nano_spec(skip_branch: str = "zero", ops: list[str] = OPS) -> ArchSpec:
    dims = dims_for(NANO)
    blocks = tuple(BlockSpec(op, tuple(range(i % 3, g.dense_width, 3))) for i, (op, g) in enumerate(zip(ops, dims.blocks)))
    return ArchSpec(model=NANO, img_size=64, num_classes=10, blocks=blocks, family="swin", skip_branch=skip_branch,
                    conv_scope="full_map")


@pytest.mark.parametrize("model, arch, dense_g, comp_g, dense_p, comp_p", [
    ("swin_t", "swin_tiny", 4.4906, 3.3304, 28_288_354, 26_232_102),
    ("swin_s", "swin_small", 8.7409, 6.1376, 49_606_258, 38_922_368),
    ("swin_b", "swin_base", 15.4309, 11.3847, 87_768_224, 67_542_078),
])
def test_published_swin_macs_and_params(model, arch, dense_g, comp_g, dense_p, comp_p) -> None:
    r = M.arch_stats(model, f"paper:{arch}")
    assert (r["dense"]["gmacs"], r["compressed"]["gmacs"]) == (dense_g, comp_g)
    assert (r["dense"]["params"], r["compressed"]["params"]) == (dense_p, comp_p)  # BN folded


def test_swin_dims_match_timm_flop_counter(dense) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        dense(torch.zeros(1, 3, 64, 64))
    dims = dims_for(NANO)
    assert M.cost(dims).macs == fc.get_total_flops() // 2
    assert M.cost(dims).params == sum(p.numel() for p in dense.parameters())
    assert dims.family == "swin" and [g.grid for g in dims.blocks] == [(16, 16)] * 2 + [(8, 8)] * 2 + [(4, 4)] * 2


def test_supernet_with_every_gate_on_is_the_dense_model(dense) -> None:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    sn = to_supernet(copy.deepcopy(dense)).eval()
    assert all(isinstance(b, SwinSupernetBlock) for b in supernet_blocks(sn))
    assert supernet_blocks(sn)[0].attn.alpha == 100.0  # the Swin family's head-mixing temperature
    set_all_gates(sn, True)
    assert (sn(x) - dense(x)).abs().max() <= 1e-6
    assert float(supernet_macs(sn)) == pytest.approx(M.cost(dims_for(NANO)).macs, rel=1e-6)


@pytest.mark.parametrize("skip_branch", ["zero", "input"])
def test_materialized_equals_pinned_supernet(dense, skip_branch: str) -> None:
    spec = nano_spec(skip_branch)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    sn = to_supernet(copy.deepcopy(dense)).eval()
    randomize_supernet_state(sn, torch.Generator().manual_seed(3))
    fix_gates(sn, spec)
    assert derive_spec(sn, NANO).ops == OPS
    plain = materialize(sn, spec)
    assert (plain(x) - sn(x)).abs().max() <= 1e-5
    # no gates, no BatchNorm (folded), no unused weights; conv and skip blocks have no windows or roll
    assert not any(isinstance(m, (nn.BatchNorm2d, SwinSinglePathAttention)) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) == M.cost(dims_for(NANO), spec).params
    blocks = family_of(plain).blocks(plain)
    assert [type(b).__name__ for b in blocks] == ["PlainSwinBlock" if op != "msa" else "SwinTransformerBlock"
                                                  for op in OPS]
    assert (blocks[1].norm1 is not None) == (skip_branch == "input")


def test_skip_branches_differ(dense) -> None:
    """x + LN1(x) (official fine-tuning) is not x: the spec's skip_branch is what runs."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    outs = []
    for skip in ("zero", "input"):
        sn = to_supernet(copy.deepcopy(dense)).eval()
        fix_gates(sn, nano_spec(skip))
        outs.append(materialize(sn, nano_spec(skip))(x))
    assert (outs[0] - outs[1]).abs().max() > 1e-2


def test_window_heads_is_timms_windowed_attention(dense) -> None:
    for blk in family_of(dense).blocks(dense)[:2] + family_of(dense).blocks(dense)[-1:]:
        x = torch.randn(2, *blk.input_resolution, blk.dim, generator=torch.Generator().manual_seed(5))
        ours = blk.attn.proj(window_heads(blk.attn, blk.attn.qkv(x), blk.window_size, blk.shift_size, blk.attn_mask))
        assert (ours - blk._attn(x)).abs().max() <= 1e-6
    assert any(family_of(dense).blocks(dense)[1].shift_size)  # a shifted block with a mask was checked


# the 3x3 kernel tap (row, col) reads head-mixing column m (SPVIT-SWIN.md section 1, written out)
SWIN_TAPS = {(0, 0): 1, (1, 0): 2, (2, 0): 3, (0, 1): 4, (1, 1): 0, (2, 1): 5, (0, 2): 6, (1, 2): 7, (2, 2): 8}


def test_swin_kernel_reads_the_published_column_table(dense) -> None:
    sn = to_supernet(copy.deepcopy(dense))
    attn = supernet_blocks(sn)[2].attn
    with torch.no_grad():
        attn.head_logits.copy_(torch.randn(attn.head_logits.shape, generator=torch.Generator().manual_seed(0)) * 300)
    V, beta, _ = attn.position_weights()
    k, b, _ = attn.conv_weights("conv3x3")
    for (r, c), m in SWIN_TAPS.items():
        assert torch.equal(k[:, :, r, c], V[m])
    k1, b1, _ = attn.conv_weights("conv1x1")
    assert torch.equal(k1[:, :, 0, 0], V[0]) and torch.equal(b1, beta[0])  # the 1x1 is column 0


@pytest.mark.parametrize("bn_train", [False, True], ids=["bn-eval", "bn-train"])
@pytest.mark.parametrize("block", [1, 5], ids=["shifted", "one-window"])
def test_search_form_equals_reference_on_swin(dense, bn_train: bool, block: int) -> None:
    """One qkv of the map and one projection (the single-path form) == MSA + separate full-map convs."""
    ref = SwinSupernetBlock(copy.deepcopy(family_of(dense).blocks(dense)[block]), 100.0, 1.5,
                            family_of(dense).positions).attn.train()
    with torch.no_grad():
        ref.head_logits.copy_(torch.randn(ref.head_logits.shape, generator=torch.Generator().manual_seed(0)) * 300)
    for bn in (ref.bn_3x3, ref.bn_1x1):
        bn.train(bn_train)
    new = copy.deepcopy(ref)
    R = ref.grid[0]
    x = torch.randn(2, R, R, ref.dim, generator=torch.Generator().manual_seed(3), requires_grad=False)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    outs = []
    for layer, shared in ((ref, False), (new, True)):
        layer.shared_values = shared
        torch.manual_seed(7)
        out = layer(x)
        (out * w).sum().backward()
        outs.append(out)
    assert (outs[0] - outs[1]).abs().max() < 1e-5
    for (n, a), (_, b) in zip(ref.named_parameters(), new.named_parameters()):
        assert (a.grad is None) == (b.grad is None), n
        if a.grad is not None:
            assert float((a.grad - b.grad).abs().max()) <= 1e-4 * max(float(a.grad.abs().max()), 1e-3), n
    assert float(ref.gates.logits.grad.abs().max()) > 0


def test_bad_swin_spec_names_the_first_bad_block(dense) -> None:
    spec = nano_spec()
    bad = dataclasses.replace(spec, blocks=spec.blocks[:3] + (BlockSpec("msa", (0, 500)),) + spec.blocks[4:])
    with pytest.raises(SpvitError, match="block 3 keeps FFN unit 500 but the dense FFN has 256 units"):
        materialize(to_supernet(copy.deepcopy(dense)).eval(), bad)
    with pytest.raises(SpvitError, match="spec is for the 'vit' family but the supernet is a 'swin' model"):
        materialize(to_supernet(copy.deepcopy(dense)).eval(), dataclasses.replace(spec, family="vit"))


def test_paper_swin_spec_is_for_swin_models() -> None:
    spec = load_spec("paper:swin_tiny")
    assert spec.ops[:4] == ["conv1x1", "skip", "conv1x1", "skip"] and set(spec.ops[4:]) == {"msa"}
    assert [b.ffn_width for b in spec.blocks][:2] == [186, 152]


def test_fused_stage_on_swin_maps(dense) -> None:
    """verify's `fused` stage: Swin conv blocks as one fused kernel each (Triton interpreter here)."""
    from spvit_deploy import verify

    rep = verify(NANO, nano_spec("input"), stages=("fused",), batch=1)
    fused = rep.checks[-1]
    assert rep.ok and fused.detail["fused_blocks"] == 3 and fused.max_abs_diff <= 1e-4
