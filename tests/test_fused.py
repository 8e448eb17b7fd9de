"""Fused conv blocks swapped into a materialized network (Triton interpreter on CPU)."""
from __future__ import annotations

import copy
import os

import pytest
import torch

from spvit_deploy.fused import FusedConvBlock, fuse_conv_blocks, kernel_path
from spvit_deploy.materialization import materialize
from spvit_deploy.supernet import fix_gates, randomize_supernet_state, to_supernet


@pytest.fixture
def plain(tiny_dense, tiny_spec):
    sn = to_supernet(copy.deepcopy(tiny_dense))
    randomize_supernet_state(sn, torch.Generator().manual_seed(5))
    return materialize(fix_gates(sn, tiny_spec).eval(), tiny_spec)


def test_fused_network_matches_plain(plain, tiny_spec) -> None:
    fused = copy.deepcopy(plain)
    n = fuse_conv_blocks(fused)
    assert n == sum(op in ("conv3x3", "conv1x1") for op in tiny_spec.ops) > 0
    assert sum(isinstance(b, FusedConvBlock) for b in fused.blocks) == n
    x = torch.randn(2, 3, 64, 64)
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"
        assert kernel_path(x) == "triton-interpreter"  # the kernel itself ran, not the reference fallback
    with torch.no_grad():
        assert (fused(x) - plain(x)).abs().max() <= 1e-4


def test_verify_fused_stage(capsys) -> None:
    import json

    from spvit_deploy.cli import main

    rc = main(["verify", "--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "64", "--fused", "--json"])
    out = json.loads(capsys.readouterr().out)
    fused = [c for c in out["checks"] if c["stage"] == "fused"]
    assert rc == 0 and fused and fused[0]["ok"] and fused[0]["detail"]["fused_blocks"] == 2
