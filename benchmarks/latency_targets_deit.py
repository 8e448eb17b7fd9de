"""MACs-targeted vs latency-targeted derivation on DeiT-Ti/S shapes, from one fixed set of gate scores
(training on ImageNet is not possible here): for each speedup goal R, the architecture `derive_for_target`
reads off the gates at 1/R of the dense MACs and the one `derive_for_latency` reads off the same gates at
1/R of the dense predicted latency; both are exported and timed against the dense model on ONNX Runtime
(CPU) with the tables of `benchmarks/latency_model.py` (results/latency_lut_<model>.json, which must come
from this machine).

Writes benchmarks/results/latency_targets_deit.{json,md}:

    HF_HUB_OFFLINE=1 flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/latency_targets_deit.py
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from spvit_deploy import macs as M  # noqa: E402
from spvit_deploy._io import write_json, write_text  # noqa: E402
from spvit_deploy.host import environment  # noqa: E402
from spvit_deploy.latency.measure import measure_specs  # noqa: E402
from spvit_deploy.latency.predict import dense_prediction, floor_prediction, predict_latency  # noqa: E402
from spvit_deploy.latency.table import load_lut  # noqa: E402
from spvit_deploy.model_source import dense_spec  # noqa: E402
from spvit_deploy.models import create_dense, model_dims  # noqa: E402
from spvit_deploy.supernet import to_supernet  # noqa: E402
from spvit_deploy.train.gate_search import LatencyTarget, derive_for_latency, derive_for_target  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def gate_scores(net: Any, seed: int) -> None:
    """A fixed, seeded set of gate logits: attention gates ~ N(1, 2^2), FFN unit gates ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blk in net.blocks:
            blk.attn.gates.logits.copy_(1.0 + 2.0 * torch.randn(3, generator=g))
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))


def run_model(model: str, goals: list[float], batch: int, seed: int, iters: int) -> dict[str, Any]:
    lut = load_lut(OUT / f"latency_lut_{model}.json")
    torch.manual_seed(seed)
    net = to_supernet(create_dense(model)).eval()
    gate_scores(net, seed)
    dims = model_dims(net)
    dense_macs = M.cost(dims).macs
    dense_ms, floor_ms = dense_prediction(lut, batch), floor_prediction(lut, batch)
    specs = {"dense": dense_spec(create_dense(model), model)}
    for r in goals:
        specs[f"macs_{r:g}x"] = derive_for_target(net, lut.model, dense_macs / r)
        specs[f"latency_{r:g}x"] = derive_for_latency(net, lut.model, LatencyTarget(
            lut=lut, batch=batch, dense_ms=dense_ms, floor_ms=floor_ms, ms=dense_ms / r, speedup=r))
    measured = measure_specs(specs, lut, (batch,), iters=iters, seed=seed)
    d = measured["dense"][batch]["p50_ms"]
    rows = []
    for label, spec in specs.items():
        if label == "dense":
            continue
        mode, goal = label.split("_")
        r = float(goal.rstrip("x"))
        m = measured[label][batch]["p50_ms"]
        rows.append({"model": model, "mode": mode, "goal_speedup": r, "batch": batch,
                     "macs_ratio": round(M.cost(dims, spec).macs / dense_macs, 4),
                     "predicted_ms": round(predict_latency(spec, lut, batch).total_ms, 4), "measured_ms": round(m, 4),
                     "measured_dense_ms": round(d, 4), "measured_speedup": round(d / m, 4),
                     "miss": round(d / m / r - 1, 4), "ops": spec.ops, "ffn_widths": [b.ffn_width for b in spec.blocks]})
        print(f"{model} {label}: measured {d / m:.3f}x (goal {r}x)", file=sys.stderr, flush=True)
    return {"model": model, "lut": f"latency_lut_{model}.json", "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    env = res["environment"]
    lines = ["# MACs-targeted vs latency-targeted derivation on DeiT shapes (fixed gate scores, ONNX Runtime CPU)", "",
             f"One seeded set of gate scores per model (attention gate logits ~ N(1, 2^2), FFN unit logits ~ N(0, 1)); "
             f"for each speedup goal R, `derive_for_target` at 1/R of the dense MACs and `derive_for_latency` at 1/R "
             f"of the dense predicted latency read an architecture off the same gates. Both are exported and timed "
             f"against the dense model (p50, batch {res['batch']}, interleaved). Machine: {env['cpu_model']} "
             f"({', '.join(env['cpu_flags'])}), onnxruntime {env['versions'].get('onnxruntime')}.", "",
             "| model | goal | mode | MACs ratio | measured speedup | miss vs goal |", "|---|---:|---|---:|---:|---:|"]
    for m in res["models"].values():
        for r in m["rows"]:
            lines.append(f"| {r['model']} | {r['goal_speedup']:g}x | {r['mode']} | {100 * r['macs_ratio']:.1f}% | "
                         f"{r['measured_speedup']:.3f}x | {100 * r['miss']:+.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="deit_t,deit_s")
    ap.add_argument("--goals", default="1.25,1.5,2.0")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    goals = [float(g) for g in args.goals.split(",")]
    res: dict[str, Any] = {"environment": environment(), "batch": args.batch, "goals": goals, "models": {}}
    for model in args.models.split(","):
        res["models"][model] = run_model(model, goals, args.batch, args.seed, args.iters)
        write_json(OUT / "latency_targets_deit.json", res)
        write_text(OUT / "latency_targets_deit.md", markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
