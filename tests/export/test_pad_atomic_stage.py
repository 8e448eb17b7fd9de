"""Width padding changes no output; a failed parity check writes nothing; the `onnx` verify stage."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.export.onnx import export_onnx
from spvit_deploy.onnx_io import read_metadata
from spvit_deploy.export.pad import pad_ffn_widths

from export_testing import IMG


@pytest.mark.parametrize("multiple", [8, 16, 64])
def test_padding_changes_no_output(plain, multiple):
    padded = pad_ffn_widths(plain, multiple)
    before = [b.mlp.fc1.out_features for b in plain.blocks if hasattr(b.mlp, "fc1")]
    widths = [b.mlp.fc1.out_features for b in padded.blocks if hasattr(b.mlp, "fc1")]
    assert all(w % multiple == 0 and w - multiple < v <= w for v, w in zip(before, widths))
    assert before != widths  # the random widths are not all multiples already
    assert not hasattr(padded.blocks[5].mlp, "fc1")  # an FFN with no unit stays bias-only
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        d = (padded(x) - plain(x)).abs().max().item()
    assert d < 1e-6


def test_padded_export_via_cli(run_dir, tmp_path):
    from spvit_deploy.cli import main

    out = tmp_path / "padded.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["export", "--run", str(run_dir), "--out", str(out), "--pad-widths", "16", "--json"]) == 0
    rep = json.loads(buf.getvalue())
    assert rep["max_abs_diff"] <= 1e-4  # checked against the unpadded module
    assert read_metadata(out)["pad_widths"] == 16


def test_failed_parity_writes_nothing(plain, tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(SpvitError, match="nothing was written"):
        export_onnx(plain, target, tolerance=-1.0, check_batches=(1,))
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_verify_onnx_stage(spec):
    from spvit_deploy.cli import main
    from spvit_deploy.verification import verify

    rep = verify("deit_t", spec, stages=("onnx",), options={"pad_widths": 8})
    onnx_check = rep.checks[-1]
    assert rep.ok and onnx_check.stage == "onnx" and onnx_check.max_abs_diff <= 1e-4
    assert onnx_check.detail["pad_widths"] == 8 and onnx_check.detail["batches"] == [2, 1]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["verify", "--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "32", "--stages", "onnx",
                   "--json"])
    assert rc == 0 and json.loads(buf.getvalue())["checks"][-1]["stage"] == "onnx"
