"""Training configs: round trip, unknown keys, impossible values, the recipe's per-size defaults."""
from __future__ import annotations

import json

import pytest

from spvit_deploy.errors import SpvitError
from spvit_deploy.macs import cost
from spvit_deploy.models import dims_for
from spvit_deploy.train.config import DataConfig, TrainConfig, config_for, make_config, recipe_for

from train_testing import NANO


def test_round_trip(digits) -> None:
    cfg = config_for(NANO, str(digits), target_ratio=0.5, search_epochs=3, finetune_lr=2e-4, distill="soft")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.search.epochs == 3 and again.finetune.lr == 2e-4
    assert cfg.differences(again) == []


def test_unknown_keys_and_types(digits) -> None:
    d = config_for(NANO, str(digits), target_ratio=0.5).to_dict()
    with pytest.raises(SpvitError, match="unknown keys \\['warp'\\]"):
        TrainConfig.from_dict({**d, "warp": 1})
    with pytest.raises(SpvitError, match="config.search: unknown keys"):
        TrainConfig.from_dict({**d, "search": {**d["search"], "gate_lrr": 1e-3}})
    with pytest.raises(SpvitError, match="'lr' has the wrong type"):
        TrainConfig.from_dict({**d, "finetune": {**d["finetune"], "lr": "fast"}})
    with pytest.raises(SpvitError, match="schema_version"):
        TrainConfig.from_dict({**d, "schema_version": 99})


@pytest.mark.parametrize("given, message", [
    ({"target_ratio": 0.5, "target_gmacs": 0.01}, "not both"),
    ({"target_ratio": 1.5}, "must be in \\(0, 1\\]"),
    ({"search_lr": -1.0}, "learning rates must be positive"),
    ({"distill": "medium"}, "--distill must be one of"),
    ({"amp": "fp8"}, "--amp must be one of"),
    ({"search_schedule": "step"}, "schedule must be one of"),
    ({"checkpoint_every": 0}, "--checkpoint-every"),
    ({"finetune_min_lr": 1.0}, "min lr"),
])
def test_impossible_values(digits, given, message) -> None:
    with pytest.raises(SpvitError, match=message):
        config_for(NANO, str(digits), **given)


def test_unknown_option_is_a_programming_error(digits) -> None:
    with pytest.raises(TypeError, match="unknown options"):
        config_for(NANO, str(digits), target_ratio=0.5, search_warp=1)


@pytest.mark.parametrize("model, name, lam, gate_lr", [
    ("deit_t", "deit_tiny", 20.0, 1e-3), ("deit_s", "deit_small", 3.0, 5e-4), ("deit_b", "deit_base", 0.08, 1e-3),
])
def test_official_recipe_per_size(model, name, lam, gate_lr) -> None:
    dims = dims_for(model)
    r = recipe_for(dims, cost(dims).gmacs)
    assert (r.name, r.lam, r.gate_lr, r.search_epochs) == (name, lam, gate_lr, 10)
    cfg = make_config(model, DataConfig(root="d"), dims, cost(dims).gmacs, target_ratio=0.5)
    assert cfg.finetune.epochs == 200 and cfg.distill == "hard" and cfg.search.schedule == "constant"
    assert make_config(model, DataConfig(root="d"), dims, 1.0, distill="none").finetune.epochs == 130


def test_other_models_get_lambda_scaled_to_their_macs() -> None:
    dims = dims_for(NANO)
    g = cost(dims).gmacs
    r = recipe_for(dims, g)
    assert r.name == "scaled" and r.lam * g**2 == pytest.approx(35.0)
