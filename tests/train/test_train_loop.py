"""The training loop in-process: schedules, a non-finite loss, Ctrl-C and exact resume."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from spvit_deploy.models import create_dense
from spvit_deploy.train.checkpoint import read_checkpoint
from spvit_deploy.train.config import DataConfig
from spvit_deploy.train.data import build_data
from spvit_deploy.train.distill import task_loss
from spvit_deploy.train.loop import (
    Interrupted, LoopOptions, MetricsLog, NonFiniteLoss, Schedule, Stage, evaluate_top, param_groups, run_stage,
    setup_runtime,
)

from train_testing import NANO


def test_schedule() -> None:
    s = Schedule("cosine", total_steps=110, warmup_steps=10, min_ratio=0.1)
    assert s.factor(0) == pytest.approx(0.1) and s.factor(9) == pytest.approx(1.0)
    assert s.factor(10) == pytest.approx(1.0) and s.factor(60) == pytest.approx(0.55) and s.factor(110) == 0.1
    assert Schedule("constant", 100).factor(77) == 1.0


def make_stage(digits: Path, hook=None, epochs: int = 2) -> tuple[Stage, object]:
    torch.manual_seed(0)
    model = create_dense(NANO, num_classes=10).train()
    rt = setup_runtime("cpu")
    data = build_data(DataConfig(root=str(digits), batch_size=8, hflip=0.0), model, seed=0)
    opt = torch.optim.AdamW(param_groups(list(model.named_parameters()), 1e-3, 0.05, lambda n, p: False))
    calls = {"n": 0}

    def loss_fn(m, x, y):
        calls["n"] += 1
        loss = task_loss(m(x), y)
        return (hook(calls["n"], loss) if hook else loss), {}

    stage = Stage(name="teacher", model=model, optimizers={"w": opt}, schedules={"w": Schedule("cosine", 14)},
                  loss_fn=loss_fn, evaluate=lambda: evaluate_top(model, data, rt), epochs=epochs)
    return stage, (data, rt)


def train(digits: Path, out: Path, hook=None, resume: bool = False) -> Stage:
    stage, (data, rt) = make_stage(digits, hook)
    opts = LoopOptions(seed=0, clip_grad=1.0, checkpoint_every=2, progress=False)
    run_stage(stage, data, rt, opts, out / "ckpt.pt", MetricsLog(out / "metrics.jsonl", True), resume=resume)
    return stage


def rows(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in
            (out / "metrics.jsonl").read_text().splitlines()]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(digits, tmp_path) -> None:
    def nan_at_5(n, loss):
        return loss * float("nan") if n == 5 else loss

    with pytest.raises(NonFiniteLoss, match="non-finite loss \\(nan\\) at epoch 1 step 5; stopped, the last good"):
        train(digits, tmp_path, nan_at_5)
    state = read_checkpoint(tmp_path / "ckpt.pt", "teacher")
    assert state["position"]["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_ctrl_c_writes_a_checkpoint_and_resume_matches(digits, tmp_path) -> None:
    ref = train(digits, tmp_path / "ref")

    def interrupt_at_6(n, loss):
        if n == 6:
            os.kill(os.getpid(), signal.SIGINT)  # handled: stop after this step
        return loss

    with pytest.raises(Interrupted):
        train(digits, tmp_path / "run", interrupt_at_6)
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt", "teacher")["position"]["step"] == 6
    resumed = train(digits, tmp_path / "run", resume=True)
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert rows(tmp_path / "ref") == rows(tmp_path / "run")  # no row lost or written twice
