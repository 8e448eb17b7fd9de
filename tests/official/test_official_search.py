"""Official search-stage files -> spec, and the official gate codes (assigned_indicators)."""
from __future__ import annotations

import json

import pytest
import torch

from spvit_deploy.cli import main
from spvit_deploy.errors import SpvitError
from spvit_deploy.official import parse_indicators, spec_from_search
from spvit_deploy.spec import load_spec

from official_ref import codes, search_file_state

# assigned_indicators of SPViT_DeiT/config/spvit_deit_bs_l008_t60_ft.json (the published DeiT-B, 8.4 GMACs)
DEIT_B_FT = [[1.0, 0.0, 0.0]] * 3 + [[1.0, 1.0, 0.0]] * 2 + [[1.0, 1.0, 1.0]] * 7


def test_search_file_and_official_config_give_the_published_arch(tmp_path, capsys) -> None:
    paper = load_spec("paper:deit_base")
    torch.save({"model": search_file_state([list(b.ffn_kept) for b in paper.blocks], 3072)}, tmp_path / "search.pth")
    config = tmp_path / "spvit_deit_bs_l008_t60_ft.json"
    config.write_text(json.dumps({"model": "spvit_deit_base_patch16_224", "assigned_indicators": DEIT_B_FT}))
    rc = main(["import-official", "--search-ckpt", str(tmp_path / "search.pth"), "--model", "deit_b",
               "--indicators", str(config), "--spec-out", str(tmp_path / "arch.json"), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["ops"] == paper.ops
    spec = load_spec(tmp_path / "arch.json")
    assert spec.blocks == paper.blocks and (spec.model, spec.img_size, spec.num_classes) == (paper.model, 224, 1000)


def test_search_checkpoint_thresholds_give_the_ops() -> None:
    """A full search-stage state: ops = cumprod(sigmoid(kernel_thresholds) > 0.5)."""
    thresholds = {"skip": [-0.5, 2.0, 2.0], "conv1x1": [1.5, -0.1, 3.0], "conv3x3": [1.5, 1.5, -2.0], "msa": [1.5, 0.2, 1.5]}
    ops = ["skip", "conv1x1", "conv3x3", "msa"] * 3
    kept = [list(range(i, 768, 7)) for i in range(12)]
    state = search_file_state(kept, 768)
    for i, op in enumerate(ops):
        state[f"module.blocks.{i}.attn.kernel_thresholds"] = torch.tensor(thresholds[op])
        state[f"module.blocks.{i}.mlp.ffn_thresholds"] = torch.randn(768)
    state["head.weight"] = torch.zeros(10, 192)
    spec = spec_from_search(state, "deit_t")
    assert spec.ops == ops and [list(b.ffn_kept) for b in spec.blocks] == kept and spec.num_classes == 10


@pytest.mark.parametrize(
    "state, model, message",
    [
        (search_file_state([[0, 1]] * 12, 768), "deit_t", "give the ops with --indicators"),
        (search_file_state([[0, 1]] * 12, 768), "deit_b", "block 0: search file has 768 FFN indicators but model"),
        (search_file_state([[0, 1]] * 11, 768), "deit_t", "block 11: search file has no FFN indicator"),
        ({"blocks.0.mlp.fc1.weight": torch.zeros(3, 3)}, "deit_t", "not an official search file"),
        ({**search_file_state([[0]] * 12, 768), "blocks.3.mlp.assigned_indicator_index": torch.full((768,), 0.3)},
         "deit_t", "block 3: search file assigned_indicator_index holds 0.3, not 0/1"),
    ],
)
def test_bad_search_files(state, model, message) -> None:
    with pytest.raises(SpvitError, match=message):
        spec_from_search(state, model)


def test_parse_indicators_forms(tmp_path) -> None:
    ops = ["conv1x1", "conv3x3", "msa", "skip"]
    assert parse_indicators(codes(ops)) == tuple(ops)
    assert parse_indicators("[[1., 0., 0.], [True, True, False], [1, 1, 1], [0, 0, 0]]") == tuple(ops)
    (tmp_path / "cfg.json").write_text(json.dumps({"assigned_indicators": codes(ops), "lr": 5e-5}))
    assert parse_indicators(str(tmp_path / "cfg.json")) == tuple(ops)


@pytest.mark.parametrize(
    "value, message",
    [
        ("[[1, 2, 0]]", "block 0 indicator \\[1, 2, 0\\] is not three 0/1"),
        ("[[1, 1, 1], [0, 1, 1]]", "block 1: indicator"),
        ("[]", "use the \\*_ft config"),
        ("nothing.json", "neither a list"),
        ("[[1, 0", "not a list of gate codes"),
    ],
)
def test_bad_indicators(value, message) -> None:
    with pytest.raises(SpvitError, match=message):
        parse_indicators(value)
