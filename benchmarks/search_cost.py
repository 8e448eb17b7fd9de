"""Search cost: one SPViT search training step against one dense training step, same model,
batch, threads and dtype, for DeiT-Tiny- and DeiT-Small-sized models (random weights, CPU).

A search step runs every branch of every block (MSA, 3x3 and 1x1 convs, so that gradients
reach all gates), the complexity loss and two AdamW optimizers; `search+kd` adds the dense
teacher's forward pass (distillation). Writes benchmarks/results/search_cost.{json,md}.

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/search_cost.py [--steps 8] [--batch 16]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from spvit_deploy._io import write_json, write_text
from spvit_deploy.models import create_dense
from spvit_deploy.supernet import to_supernet
from spvit_deploy.train.distill import distill_loss
from spvit_deploy.train.report import environment
from spvit_deploy.train.search import complexity_loss, is_gate_param

OUT = Path(__file__).parent / "results"


def time_steps(step, steps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def measure(model_name: str, batch: int, steps: int, amp: bool) -> dict:
    torch.manual_seed(0)
    dense = create_dense(model_name, num_classes=1000).train()
    teacher = copy.deepcopy(dense).eval().requires_grad_(False)
    supernet = to_supernet(copy.deepcopy(dense)).train()
    x = torch.randn(batch, 3, 224, 224)
    y = torch.randint(0, 1000, (batch,))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else nullcontext
    opt_d = torch.optim.AdamW(dense.parameters(), 1e-4)
    weights = [p for n, p in supernet.named_parameters() if not is_gate_param(n)]
    gates = [p for n, p in supernet.named_parameters() if is_gate_param(n)]
    opt_w, opt_g = torch.optim.AdamW(weights, 1e-4), torch.optim.AdamW(gates, 1e-3, weight_decay=0.0)
    target = 0.5 * float(complexity_loss(supernet, 0.0, 0.0)[1].detach())

    def dense_step() -> None:
        with ctx():
            loss = F.cross_entropy(dense(x).float(), y)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()

    def search_step(kd: bool) -> None:
        with ctx():
            out = supernet(x).float()
            loss = F.cross_entropy(out, y)
            if kd:
                with torch.no_grad():
                    t = teacher(x)
                loss = 0.5 * loss + 0.5 * distill_loss(out, t, "hard")
            loss = loss + complexity_loss(supernet, target, 1.0)[0]
        opt_w.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_g.step()

    res = {}
    for name, fn in (("dense", dense_step), ("search", lambda: search_step(False)), ("search+kd", lambda: search_step(True))):
        ts = time_steps(fn, steps)
        res[name] = {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4), "steps": steps}
    for name in ("search", "search+kd"):
        res[name]["x_dense"] = round(res[name]["median_s"] / res["dense"]["median_s"], 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="deit_tiny,deit_small")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for model in args.models.split(","):
        for amp in (False, True):
            r = measure(model, args.batch, args.steps, amp)
            rows.append({"model": model, "batch": args.batch, "dtype": "bf16 autocast" if amp else "fp32", **r})
            print(json.dumps(rows[-1]), flush=True)
    env = environment()
    write_json(OUT / "search_cost.json", {"benchmark": "search_cost", "environment": env, "rows": rows})
    lines = ["# Search cost: one search training step vs one dense training step", "",
             f"CPU: {env['cpu']}, {env['threads']} threads, torch {env['torch']}, timm {env['timm']}; 224 px, "
             f"batch {args.batch}, random weights, median of {args.steps} steps after 2 warm-up steps.", "",
             "| model | dtype | dense step (s) | search step (s) | x dense | search + hard KD (s) | x dense |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dtype']} | {r['dense']['median_s']:.3f} | {r['search']['median_s']:.3f} | "
                     f"{r['search']['x_dense']:.2f}x | {r['search+kd']['median_s']:.3f} | {r['search+kd']['x_dense']:.2f}x |")
    lines += ["", "A search step computes MSA, the 3x3 and the 1x1 bottleneck convolution in every block (so every gate "
              "gets a gradient) plus the complexity loss and a second optimizer for the gate and head-mixing logits; "
              "`search + hard KD` adds the dense teacher's forward pass. Fine-tuning afterwards computes only the "
              "chosen branch per block.", ""]
    write_text(OUT / "search_cost.md", "\n".join(lines))


if __name__ == "__main__":
    main()
