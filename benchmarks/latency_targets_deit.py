"""MACs-targeted vs latency-targeted derivation on DeiT-Ti/S shapes, from one fixed set of gate scores
(training on ImageNet is not possible here): for each speedup goal R, the architecture `derive_for_target`
reads off the gates at 1/R of the dense MACs, the one `derive_for_latency` reads off the same gates at
1/R of the dense predicted latency, and the one `derive_calibrated` settles on after timing its candidates
against the dense model (what `compress --target-speedup` does). Each is exported and timed against the
dense model on ONNX Runtime (CPU) by `measure_speedup` (interleaved, the median of independent sessions),
with the tables of `benchmarks/latency_model.py` (results/latency_lut_<model>.json, which must come from
this machine).

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
from spvit_deploy.latency.calibrate import MAX_ITERS  # noqa: E402
from spvit_deploy.latency.measure import SESSIONS, measure_speedup  # noqa: E402
from spvit_deploy.latency.predict import dense_prediction, floor_prediction, predict_latency  # noqa: E402
from spvit_deploy.latency.table import load_lut  # noqa: E402
from spvit_deploy.models import create_dense, model_dims  # noqa: E402
from spvit_deploy.supernet import to_supernet  # noqa: E402
from spvit_deploy.train.gate_search import (LatencyTarget, derive_calibrated, derive_for_latency,  # noqa: E402
                                           derive_for_target)

OUT = Path(__file__).resolve().parent / "results"


def gate_scores(net: Any, seed: int) -> None:
    """A fixed, seeded set of gate logits: attention gates ~ N(1, 2^2), FFN unit gates ~ N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blk in net.blocks:
            blk.attn.gates.logits.copy_(1.0 + 2.0 * torch.randn(3, generator=g))
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_model(model: str, goals: list[float], batch: int, seed: int) -> dict[str, Any]:
    lut = load_lut(OUT / f"latency_lut_{model}.json")
    torch.manual_seed(seed)
    net = to_supernet(create_dense(model)).eval()
    gate_scores(net, seed)
    dims = model_dims(net)
    dense_macs = M.cost(dims).macs
    dense_ms, floor_ms = dense_prediction(lut, batch), floor_prediction(lut, batch)
    specs, calibration = {}, {}
    for r in goals:
        target = LatencyTarget(lut=lut, batch=batch, dense_ms=dense_ms, floor_ms=floor_ms, ms=dense_ms / r, speedup=r)
        specs[f"macs_{r:g}x"] = derive_for_target(net, lut.model, dense_macs / r)
        specs[f"latency_{r:g}x"] = derive_for_latency(net, lut.model, target)
        say(f"{model} {r:g}x: calibrating the latency-targeted derivation")
        specs[f"calibrated_{r:g}x"] = derive_calibrated(net, lut.model, target,
                                                        lambda spec: measure_speedup(spec, lut, batch, seed=seed), log=say)
        calibration[f"{r:g}x"] = specs[f"calibrated_{r:g}x"].extra["latency_calibration"]
    rows = []
    for label, spec in specs.items():
        mode, goal = label.split("_")
        r = float(goal.rstrip("x"))
        m = measure_speedup(spec, lut, batch, seed=seed)
        rows.append({"model": model, "mode": mode, "goal_speedup": r, "batch": batch, "dense_predicted_ms": round(dense_ms, 4),
                     "macs_ratio": round(M.cost(dims, spec).macs / dense_macs, 4),
                     "predicted_ms": round(predict_latency(spec, lut, batch).total_ms, 4), "measured_ms": m["ms"],
                     "measured_dense_ms": m["dense_ms"], "measured_speedup": m["speedup"],
                     "session_speedups": m["session_speedups"],
                     "miss": round(m["speedup"] / r - 1, 4), "ops": spec.ops, "ffn_widths": [b.ffn_width for b in spec.blocks]})
        say(f"{model} {label}: measured {m['speedup']:.3f}x (goal {r}x)")
    return {"model": model, "lut": f"latency_lut_{model}.json", "rows": rows, "calibration": calibration}


def markdown(res: dict[str, Any]) -> str:
    import statistics

    env = res["environment"]
    lines = ["# MACs-targeted vs latency-targeted derivation on DeiT shapes (fixed gate scores, ONNX Runtime CPU)", "",
             f"From `benchmarks/latency_targets_deit.py`. One seeded set of gate scores per model (attention gate logits "
             f"~ N(1, 2^2), FFN unit logits ~ N(0, 1)); for each speedup goal R: **macs**, `derive_for_target` at 1/R of "
             f"the dense MACs; **latency**, `derive_for_latency` at 1/R of the dense predicted latency (the table alone); "
             f"**calibrated**, `derive_calibrated`, the latency derivation re-run at corrected predicted targets after "
             f"timing its candidates against the dense model (at most {MAX_ITERS} timed; what `compress --target-speedup` "
             f"does). Every architecture is exported and timed against the dense model by `measure_speedup` (random "
             f"weights, interleaved, batch {res['batch']}, the median of {SESSIONS} independent sessions; the sessions' "
             f"speedups are in the json). Machine: {env['cpu_model']} ({', '.join(env['cpu_flags'])}), "
             f"{env.get('threads') or env.get('usable_cpus')} threads, onnxruntime {env['versions'].get('onnxruntime')}.", "",
             "| model | goal | mode | MACs ratio | predicted speedup | measured speedup | miss vs goal |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for m in res["models"].values():
        for r in m["rows"]:
            dense_pred = r.get("dense_predicted_ms")
            pred = f"{dense_pred / r['predicted_ms']:.3f}x" if dense_pred else "-"
            lines.append(f"| {r['model']} | {r['goal_speedup']:g}x | {r['mode']} | {100 * r['macs_ratio']:.1f}% | "
                         f"{pred} | {r['measured_speedup']:.3f}x | {100 * r['miss']:+.1f}% |")
    lines += ["", "| mode | mean abs miss | worst abs miss | within 5% of the goal |", "|---|---:|---:|---:|"]
    rows = [r for m in res["models"].values() for r in m["rows"]]
    for mode in ("macs", "latency", "calibrated"):
        ms = [abs(r["miss"]) for r in rows if r["mode"] == mode]
        if ms:
            lines.append(f"| {mode} | {100 * statistics.mean(ms):.1f}% | {100 * max(ms):.1f}% | "
                         f"{sum(x <= 0.05 for x in ms)} / {len(ms)} |")
    lines += ["", "Calibration iterations (asked = predicted speedup given to the derivation -> measured):", ""]
    for m in res["models"].values():
        for goal, c in m.get("calibration", {}).items():
            its = "; ".join(f"{i['goal_predicted_speedup']:.3f}x -> {i['measured_speedup']:.3f}x" for i in c["iterations"])
            lines.append(f"- {m['model']} {goal}: {its} (chosen: iteration {c['chosen']}, within "
                         f"{100 * c['tolerance']:.1f}%: {'yes' if c['met'] else 'no'})")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="deit_t,deit_s")
    ap.add_argument("--goals", default="1.25,1.5,2.0")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    goals = [float(g) for g in args.goals.split(",")]
    res: dict[str, Any] = {"environment": environment(), "batch": args.batch, "goals": goals, "models": {}}
    for model in args.models.split(","):
        res["models"][model] = run_model(model, goals, args.batch, args.seed)
        write_json(OUT / "latency_targets_deit.json", res)
        write_text(OUT / "latency_targets_deit.md", markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
