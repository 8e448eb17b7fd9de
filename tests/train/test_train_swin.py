"""compress on a Swin: the tiny registered Swin (random weights) searches and fine-tunes a few steps
on the digits ImageFolder, lands on the MACs target, and its run loads, exports and serves like a DeiT's."""
from __future__ import annotations

import json

import torch

from spvit_deploy.cli import main
from spvit_deploy.families.swin import PlainSwinBlock
from spvit_deploy.run import load_run

SWIN = "swin_nano_patch4_window4_64"


def test_compress_swin_a_few_steps(digits, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["compress", "--model", SWIN, "--data", str(digits), "--no-pretrained", "--target-ratio", "0.6",
            "--out", str(out), "--search-epochs", "1", "--finetune-epochs", "1", "--batch-size", "20",
            "--amp", "none", "--no-progress", "--json", "--threads", "2"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["model"] == SWIN and abs(rep["arch"]["target_error"]) <= 0.05
    run = load_run(out)
    assert run.spec.family == "swin" and run.spec.conv_scope == "full_map" and run.spec.skip_branch == "zero"
    assert len(run.spec.blocks) == 6 and run.spec.num_classes == 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert run.model(x).shape == (2, 10)
    n_plain = sum(isinstance(b, PlainSwinBlock) for b in run.model.modules())
    assert n_plain == sum(op != "msa" for op in run.spec.ops)
    assert main(["export-triton", "--run", str(out), "--repo", str(tmp_path / "repo"), "--json"]) == 0
    assert (tmp_path / "repo" / f"{SWIN}_spvit" / "1" / "model.onnx").is_file()
