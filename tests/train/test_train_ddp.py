"""Data-parallel training under torchrun: 2 CPU processes with gloo; logging and checkpoints once per job."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from train_testing import NANO, SPVIT, env


def test_torchrun_two_cpu_processes(digits, tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SPVIT,
           "compress", "--model", NANO, "--data", str(digits), "--no-pretrained", "--out", str(out),
           "--target-ratio", "0.5", "--search-epochs", "1", "--finetune-epochs", "1", "--batch-size", "4",
           "--checkpoint-every", "3", "--amp", "none", "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(f"wrote {out}") == 1  # rank 0 reports, rank 1 stays quiet
    rep = json.loads((out / "report.json").read_text())
    assert rep["processes"] == 2 and rep["compressed"]["macs_ratio"] <= 0.55
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = Counter((r["stage"], r["kind"], r["step"]) for r in rows)
    assert max(keys.values()) == 1  # every row written once
    per_epoch = 60 // (4 * 2)  # 60 training images split over 2 ranks, batches of 4
    assert sum(1 for r in rows if r["stage"] == "search" and r["kind"] == "step") == per_epoch
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "finetune.json", "finetune.pt", "search.json", "search.pt"]
