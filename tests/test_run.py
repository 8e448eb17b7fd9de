"""Run folders: save, load from the spec alone, damaged folders."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.materialization import materialize
from spvit_deploy.run import load_run, save_run
from spvit_deploy.supernet import fix_gates, randomize_supernet_state, to_supernet


@pytest.fixture
def plain(tiny_dense, tiny_spec):
    sn = to_supernet(copy.deepcopy(tiny_dense))
    randomize_supernet_state(sn, torch.Generator().manual_seed(3))
    return materialize(fix_gates(sn, tiny_spec).eval(), tiny_spec)


def test_round_trip(plain, tiny_spec, tmp_path) -> None:
    save_run(plain, tiny_spec, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert run.spec == tiny_spec
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(run.model(x), plain(x))
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["data_config"]["input_size"] == [3, 64, 64] and meta["num_classes"] == 10
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_damaged_folders(plain, tiny_spec, tmp_path) -> None:
    with pytest.raises(SpvitError, match="does not exist"):
        load_run(tmp_path / "nothing")
    run_dir = save_run(plain, tiny_spec, tmp_path / "run")
    (run_dir / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(SpvitError, match="damaged"):
        load_run(run_dir)
    (run_dir / "model.safetensors").unlink()
    with pytest.raises(SpvitError, match="no model.safetensors"):
        load_run(run_dir)


def test_weights_that_do_not_fit_the_spec(plain, tiny_spec, tmp_path) -> None:
    from dataclasses import replace

    run_dir = save_run(plain, tiny_spec, tmp_path / "run")
    blocks = list(tiny_spec.blocks)
    blocks[0] = replace(blocks[0], attn="msa")
    replace(tiny_spec, blocks=tuple(blocks)).save(run_dir / "arch.json")
    with pytest.raises(SpvitError, match="does not match its arch spec"):
        load_run(run_dir)
