"""Search cost: one SPViT search training step against one dense training step, same model,
batch, threads and dtype (random weights, CPU), in the supernet's forms:

- `before`: the earlier search step: each conv branch is its own convolution of the C-wide input
  with the head-mixed kernel (9*C*d MACs per token for the 3x3, C*d for the 1x1, on top of the
  MSA), each branch output multiplied by its gate, FFN activations multiplied by their gates;
- `conv form, folded gates`: the same conv branches, FFN gates folded into fc2's columns (the
  part of the gain that does not come from sharing values);
- `single-path` (now): the conv branches reuse the MSA's per-head values (nine head-mixed value
  maps, shifted and summed; the centre map for the 1x1), one projection matmul weighted by the
  gates, FFN gates folded into fc2's columns.

A search step runs every branch of every block (so that gradients reach all gates), the
complexity loss and two AdamW optimizers; `+kd` adds the dense teacher's forward pass (hard
distillation), under `torch.no_grad` (what the search did) and `torch.inference_mode` (what it
does now). Variants are timed in interleaved rounds, so drift on a shared machine hits all of
them alike. Memory: the bytes autograd saves for backward in one step (activations, counted
once per storage), the part of a step's peak that the form changes.

Writes benchmarks/results/search_cost.{json,md}.

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/search_cost.py [--rounds 4] [--steps 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from spvit_deploy._io import write_json, write_text
from spvit_deploy.models import create_dense
from spvit_deploy.supernet import SinglePathAttention, to_supernet
from spvit_deploy.supernet.layers import GatedMlp
from spvit_deploy.train.distill import distill_loss, teacher_logits
from spvit_deploy.train.report import environment
from spvit_deploy.train.gate_search import complexity_loss, is_gate_param

OUT = Path(__file__).parent / "results"
FORMS = {"before": (False, False), "conv form, folded gates": (False, True), "single-path": (True, True)}


def saved_bytes(step: Callable[[], None]) -> int:
    """Bytes of the tensors autograd keeps for backward during one step (each storage once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def measure(model_name: str, batch: int, rounds: int, steps: int, amp: bool) -> dict:
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

    def search_step(form: tuple[bool, bool], kd: str) -> None:
        SinglePathAttention.shared_values, GatedMlp.fold_gates = form
        with ctx():
            out = supernet(x).float()
            loss = F.cross_entropy(out, y)
            if kd == "no_grad":
                with torch.no_grad():
                    t = teacher(x)
                loss = 0.5 * loss + 0.5 * distill_loss(out, t, "hard")
            elif kd == "inference_mode":
                loss = 0.5 * loss + 0.5 * distill_loss(out, teacher_logits(teacher, x), "hard")
            loss = loss + complexity_loss(supernet, target, 1.0)[0]
        opt_w.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_g.step()

    variants: dict[str, Callable[[], None]] = {"dense": dense_step}
    for name, form in FORMS.items():
        variants[name] = lambda f=form: search_step(f, "")
    variants["before+kd"] = lambda: search_step(FORMS["before"], "no_grad")
    variants["single-path+kd"] = lambda: search_step(FORMS["single-path"], "no_grad")
    variants["single-path+kd(inference_mode)"] = lambda: search_step(FORMS["single-path"], "inference_mode")
    memory = {name: saved_bytes(fn) for name, fn in variants.items() if "+kd" not in name}
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(steps):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    SinglePathAttention.shared_values, GatedMlp.fold_gates = FORMS["single-path"]
    res = {}
    for name, ts in times.items():
        res[name] = {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4), "steps": len(ts)}
        if name in memory:
            res[name]["saved_for_backward_mb"] = round(memory[name] / 2**20, 1)
    for name in variants:
        if name != "dense":
            res[name]["x_dense"] = round(res[name]["median_s"] / res["dense"]["median_s"], 3)
    return res


def markdown(rows: list[dict], env: dict, args: argparse.Namespace, wall: float, runs: list[dict]) -> str:
    rounds, steps = runs[0].get("rounds", args.rounds), runs[0].get("steps", args.steps)  # the header's run
    n = rounds * steps
    lines = ["# Search cost: one search training step vs one dense training step", "",
             f"CPU: {env['cpu']} ({', '.join(env['cpu_flags']) or 'no AVX flags read'}), {env['threads']} threads, "
             f"torch {env['torch']}, timm {env['timm']}; 224 px, batch {args.batch}, random weights; median of {n} "
             f"steps per variant ({rounds} interleaved rounds of {steps}) after one warm-up step; "
             f"whole run {wall / 60:.1f} min.", "",
             "`x dense` is the step time over the dense model's step time in the same run. Memory is what autograd "
             "saves for backward in one step.", "",
             "| model | dtype | dense step (s) | before (s) | x dense | conv form, folded gates | single-path (s) | "
             "x dense | + hard KD, before | + hard KD, single-path | + KD under inference_mode |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['dense']['median_s']:.3f} | {r['before']['median_s']:.3f} | "
            f"{r['before']['x_dense']:.2f}x | {r['conv form, folded gates']['x_dense']:.2f}x | "
            f"{r['single-path']['median_s']:.3f} | **{r['single-path']['x_dense']:.2f}x** | "
            f"{r['before+kd']['x_dense']:.2f}x | {r['single-path+kd']['x_dense']:.2f}x | "
            f"{r['single-path+kd(inference_mode)']['x_dense']:.2f}x |")
    lines += ["", "| model | dtype | saved for backward: dense (MB) | before (MB) | conv form, folded gates (MB) | "
              "single-path (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dtype']} | {r['dense']['saved_for_backward_mb']:.0f} | "
                     f"{r['before']['saved_for_backward_mb']:.0f} | "
                     f"{r['conv form, folded gates']['saved_for_backward_mb']:.0f} | "
                     f"{r['single-path']['saved_for_backward_mb']:.0f} |")
    for later in runs[1:]:
        models = sorted({r["model"] for r in rows if r["run"] == later["date"]})
        lines += ["", f"{', '.join(models)}: a later run ({later['date']}, {later['cpu']}, {later['wall_s'] / 60:.1f} "
                  f"min, median of {later['rounds'] * later['steps']} steps per variant); its `x dense` compares with its own dense step, timed in that run."]
    lines += ["", "All forms compute the same function (tests/supernet/test_supernet_shared_values.py: outputs within "
              "1e-5, gradients within 1e-4 relative, BatchNorm statistics equal). Fine-tuning computes only the chosen "
              "branch per block and keeps the convolution form there (cheaper than computing all H heads' values "
              "when MSA is off).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="deit_tiny,deit_small")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--append", action="store_true",
                    help="keep the committed rows of other models (each row says which run it came from)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            r = measure(model, args.batch, args.rounds, args.steps, dtype == "bf16")
            rows.append({"model": model, "batch": args.batch, "dtype": "bf16 autocast" if dtype == "bf16" else "fp32", **r})
            print(json.dumps(rows[-1]), flush=True)
    env = environment()
    wall = time.perf_counter() - t0
    run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": env["cpu"], "wall_s": round(wall, 1),
           "rounds": args.rounds, "steps": args.steps}
    rows = [dict(r, run=run["date"]) for r in rows]
    runs = [run]
    if args.append and (OUT / "search_cost.json").exists():  # the header's run stays the first one
        old = json.loads((OUT / "search_cost.json").read_text())
        runs = old.get("runs") or [{"date": "first", "cpu": old["environment"]["cpu"], "wall_s": old["wall_s"]}]
        kept = [dict(r, run=r.get("run", runs[0]["date"])) for r in old["rows"] if r["model"] not in args.models.split(",")]
        env, wall, rows, runs = old["environment"], old["wall_s"], kept + rows, runs + [run]
    write_json(OUT / "search_cost.json", {"benchmark": "search_cost", "environment": env, "wall_s": round(wall, 1),
                                          "runs": runs, "rows": rows})
    write_text(OUT / "search_cost.md", markdown(rows, env, args, wall, runs))


if __name__ == "__main__":
    main()
