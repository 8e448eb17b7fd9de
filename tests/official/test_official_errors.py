"""import-official on a checkpoint that does not match its architecture: a one-line error naming the
first block that disagrees, exit status 2, nothing written."""
from __future__ import annotations

import json

import pytest
import torch

from spvit_deploy.cli import main
from spvit_deploy.spec import ArchSpec, BlockSpec

from official_ref import codes, random_official_state, search_file_state

OPS = ["conv3x3", "conv1x1", "msa", "msa", "conv3x3", "msa", "conv1x1", "msa", "msa", "msa", "msa", "msa"]
KEPT = [list(range(0, 768, 50 + 3 * i)) for i in range(12)]


def _drop(sd: dict, prefix: str) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(prefix)}


def _mutations() -> dict[str, tuple]:
    """name -> (edit of the state dict, edit of the CLI arguments, expected message)."""
    qk = {"blocks.1.attn.qk.weight": torch.zeros(384, 192), "blocks.1.attn.qk.bias": torch.zeros(384)}
    return {
        "missing head_probs": (lambda sd: _drop(sd, "blocks.0.attn.head_probs"), None,
                               "block 0 (conv3x3): the checkpoint lacks blocks.0.attn.head_probs, which a conv3x3 block needs"),
        "FFN width differs": (None, lambda a: a + ["--search-ckpt", "{dir}/search_short.pth"],
                              f"block 3: FFN width differs: the checkpoint's mlp.fc1 has {len(KEPT[3])} units, "
                              f"the architecture keeps {len(KEPT[3]) - 1}"),
        "extra qk on a conv block": (lambda sd: {**sd, **qk}, None,
                                     "block 1 (conv1x1): unexpected blocks.1.attn.qk.bias; a conv1x1 block has no qk"),
        "op differs": (None, lambda a: a[:-1] + [json.dumps(codes(["msa"] + OPS[1:]))],
                       "block 0: the architecture says msa but the checkpoint's block is conv3x3"),
        "indicators too short": (None, lambda a: a[:-1] + [json.dumps(codes(OPS[:11]))],
                                 "block 11: --indicators has no entry for it (11 blocks, model 'deit_tiny_patch16_224' has 12)"),
        "checkpoint too shallow": (lambda sd: _drop(sd, "blocks.11."), None, "block 11: "),
        "checkpoint too deep": (lambda sd: {**sd, "blocks.12.norm1.weight": torch.ones(192)}, None,
                                "checkpoint.pth has 13 blocks but model 'deit_tiny_patch16_224' has 12"),
        "a skip block": (lambda sd: _drop(sd, "blocks.5.attn."), lambda a: a[:-1] + [json.dumps(codes(OPS[:5] + ["skip"] + OPS[6:]))],
                         "block 5 is a skip block: the official fine-tuning code adds the normalised input back"),
        "wrong model": (None, lambda a: [x if x != "deit_t" else "deit_s" for x in a],
                        "does not fit model 'deit_small_patch16_224': cls_token is (1, 1, 192)"),
        "search-stage checkpoint": (lambda sd: {**sd, "blocks.0.attn.kernel_thresholds": torch.zeros(3)}, None,
                                    "is a search-stage checkpoint: derive a spec from it with --search-ckpt"),
        "no architecture": (None, lambda a: a[:-2], "say which architecture the checkpoint has"),
        "arch and search": (None, lambda a: a[:-2] + ["--arch", "paper:deit_tiny", "--search-ckpt", "{dir}/search_short.pth"],
                            "give the architecture once"),
        "other image size": (None, lambda a: a + ["--img-size", "224"], "--img-size 224 does not fit"),
        "arch for another model": (None, lambda a: a[:-2] + ["--arch", "paper:deit_small"],
                                   "the architecture is for model 'deit_small_patch16_224', not 'deit_t'"),
        "kept unit beyond the dense FFN": (None, lambda a: a[:-2] + ["--arch", "{dir}/bad_arch.json"],
                                           "the architecture: block 0 keeps FFN unit 900 but the dense FFN has 768"),
    }


MUTATIONS = _mutations()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("official")
    sd = random_official_state(OPS, [len(k) for k in KEPT], 192, 3, 64, 10, seed=3)
    short = [k[:-1] if i == 3 else k for i, k in enumerate(KEPT)]
    torch.save({"model": search_file_state(short, 768)}, d / "search_short.pth")
    bad = [KEPT[0][:-1] + [900], *KEPT[1:]]
    ArchSpec(model="deit_tiny_patch16_224", img_size=64, num_classes=10, source="test",
             blocks=tuple(BlockSpec(op, tuple(k)) for op, k in zip(OPS, bad))).save(d / "bad_arch.json")
    return sd, d


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_mismatch_is_one_line_naming_the_block(name, base, tmp_path, capsys) -> None:
    sd, d = base
    edit_state, edit_args, message = MUTATIONS[name]
    torch.save({"model": edit_state(sd) if edit_state else sd}, tmp_path / "checkpoint.pth")
    out = tmp_path / "run"
    args = ["import-official", str(tmp_path / "checkpoint.pth"), "--model", "deit_t", "--out", str(out),
            "--indicators", json.dumps(codes(OPS))]
    if edit_args:
        args = [a.replace("{dir}", str(d)) for a in edit_args(args)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists()
