"""The architecture spec: round trip, published archs, validation errors."""
from __future__ import annotations

import json

import pytest

from spvit_deploy.errors import SpvitError
from spvit_deploy.spec import PAPER_ARCHS, ArchSpec, load_spec, op_from_code


def test_round_trip(tiny_spec: ArchSpec, tmp_path) -> None:
    path = tmp_path / "arch.json"
    tiny_spec.save(path)
    again = load_spec(path)
    assert again == tiny_spec
    assert json.loads(path.read_text())["schema_version"] == 2
    assert json.loads(path.read_text())["family"] == "vit"
    assert load_spec(tmp_path) == tiny_spec  # a run folder works too


def test_schema_1_specs_still_load_as_class_token_vits(tiny_spec: ArchSpec) -> None:
    d = tiny_spec.to_dict()
    d["schema_version"] = 1
    del d["family"]
    old = ArchSpec.from_dict(d)
    assert old == tiny_spec and old.family == "vit" and old.skip_branch == "zero"
    with pytest.raises(SpvitError, match="need schema_version 2"):
        ArchSpec.from_dict({**d, "skip_branch": "input"})


@pytest.mark.parametrize("name", PAPER_ARCHS)
def test_paper_archs_load(name: str) -> None:
    spec = load_spec(f"paper:{name}")
    assert len(spec.blocks) == {"swin_small": 24, "swin_base": 24}.get(name, 12)
    assert spec.img_size == 224 and spec.num_classes == 1000
    swin = name.startswith("swin")
    assert spec.family == ("swin" if swin else "vit")
    # official fine-tuning trained Swin skip blocks as x + LN1(x); the conv ops run on the full map
    assert (spec.skip_branch, spec.conv_scope) == (("input", "full_map") if swin else ("zero", ""))
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_paper_deit_base_matches_published_table() -> None:
    spec = load_spec("paper:deit_base")
    assert spec.ops == ["conv1x1"] * 3 + ["conv3x3"] * 2 + ["msa"] * 7
    assert [b.ffn_width for b in spec.blocks] == [1118, 489, 1050, 1345, 1336, 1326, 1431, 1564, 1606, 1702, 1290, 190]


def test_op_codes() -> None:
    assert op_from_code([1, 1, 0]) == "conv3x3"
    assert op_from_code([0, 0, 0]) == "skip"
    with pytest.raises(SpvitError, match="nested"):
        op_from_code([0, 1, 0])


def _mutate(spec: ArchSpec, **changes):
    d = spec.to_dict()
    for k, v in changes.items():
        if k.startswith("block0_"):
            d["blocks"][0][k.removeprefix("block0_")] = v
        else:
            d[k] = v
    return d


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schema_version": 3}, "schema_version 3 is not supported"),
        ({"family": "convnext"}, "unknown family"),
        ({"skip_branch": "one"}, "skip_branch 'one'"),
        ({"conv_scope": "window"}, "conv_scope 'window'"),
        ({"colour": "red"}, "unknown keys"),
        ({"block0_attn": "conv5x5"}, "unknown op 'conv5x5'"),
        ({"block0_ffn_kept": [3, 1]}, "sorted"),
        ({"block0_ffn_kept": [-1, 2]}, "negative"),
        ({"block0_ffn_width": 7}, "ffn_width"),
        ({"img_size": "224"}, "'img_size' must be a int"),
        ({"blocks": "none"}, "'blocks' must be a list"),
    ],
)
def test_validation_errors(tiny_spec: ArchSpec, changes, message) -> None:
    with pytest.raises(SpvitError, match=message):
        ArchSpec.from_dict(_mutate(tiny_spec, **changes))


def test_validate_against_model(tiny_spec: ArchSpec) -> None:
    with pytest.raises(SpvitError, match="has 12 blocks but model"):
        tiny_spec.validate_against(11, [768] * 11)
    with pytest.raises(SpvitError, match="keeps FFN unit"):
        tiny_spec.validate_against(12, [10] * 12)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(SpvitError, match="not found"):
        load_spec(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpvitError, match="not valid JSON"):
        load_spec(bad)
    with pytest.raises(SpvitError, match="no published architecture"):
        load_spec("paper:deit_huge")
