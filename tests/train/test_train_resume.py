"""kill -9 in the middle of the search and again in the middle of fine-tuning, `--resume` twice:
the run ends bit-identical to an uninterrupted one (CPU, same seed and threads)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file

from train_testing import NANO, run_cli, start_cli, wait_for


def args(data: Path, out: Path) -> list[str]:
    return ["compress", "--model", NANO, "--data", str(data), "--no-pretrained", "--out", str(out),
            "--target-ratio", "0.5", "--search-epochs", "3", "--finetune-epochs", "3", "--batch-size", "4",
            "--lr", "1e-3", "--gate-lr", "1e-2", "--distill", "soft", "--amp", "none", "--checkpoint-every", "2",
            "--threads", "1", "--no-progress"]


def steps(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(digits, tmp_path) -> None:
    ref = run_cli(args(digits, tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    for stage, resume in (("search", []), ("finetune", ["--resume"])):
        proc = start_cli(args(digits, out) + resume)
        wait_for(out / "checkpoints" / f"{stage}.pt", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
    done = run_cli(args(digits, out) + ["--resume"])
    assert done.returncode == 0, done.stderr
    assert "finetune: resuming at epoch" in done.stderr  # it continued mid-stage, not from scratch
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ref" / "arch.json").read_text() == (out / "arch.json").read_text()
    assert steps(tmp_path / "ref") == steps(out)  # metrics: every row once, same values
