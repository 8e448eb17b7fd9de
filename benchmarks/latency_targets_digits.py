"""MACs-targeted vs latency-targeted compression at the same speedup goal, on the demo's digits (real data).

The goal is a speedup R over the dense ViT-Nano on ONNX Runtime (CPU, batch B). MACs-targeted: `compress
--target-ratio 1/R` (what a user without a latency model would ask for). Latency-targeted: `compress
--target-speedup R --latency-lut lut.json`. Both runs get the same table, so both reports carry the measured
latency of the materialized network against the dense one (timed interleaved after fine-tuning). Same demo
recipe otherwise (shipped teacher, soft distillation), seeds 0-2.

The latency-targeted runs calibrate their derivation by measurement before fine-tuning (the candidate timed
against the dense model, interleaved, re-derived until within 2.5%; `spvit_deploy.latency.calibrate`); the
calibration's iterations are in the rows. Measured speedups are the median of per-round paired ratios
(`measure_run`).

Writes benchmarks/results/latency_targets_digits.{json,md} and latency_lut_digits.json. Each run can be its
own process (`--only latency:0`, its row kept in WORK/rows/), so that a lock can be taken per run:

    HF_HUB_OFFLINE=1 flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/latency_targets_digits.py
    for r in macs:0 latency:0 ...; do flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/latency_targets_digits.py --only $r; done
    .venv/bin/python benchmarks/latency_targets_digits.py --summarize
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spvit_deploy._io import write_json, write_text  # noqa: E402
from spvit_deploy.latency.profile import profile_latency  # noqa: E402
from spvit_deploy.latency.measure import SESSIONS  # noqa: E402
from spvit_deploy.latency.table import load_lut  # noqa: E402
from spvit_deploy.demo import MODEL, DemoPlan, demo_config, prepare_digits, shipped_teacher, train_teacher  # noqa: E402
from spvit_deploy.train.pipeline import compress  # noqa: E402
from spvit_deploy.train.report import environment  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def run_one(work: Path, plan: DemoPlan, weights: Path, lut: Path, batch: int, speedup: float, mode: str,
            seed: int) -> dict[str, Any]:
    cfg = demo_config(work / "data", plan, weights, seed)
    if mode == "macs":
        cfg = replace(cfg, target_ratio=1 / speedup, latency_lut=str(lut), latency_batch=batch)
    else:
        cfg = replace(cfg, target_ratio=0.0, target_speedup=speedup, latency_lut=str(lut), latency_batch=batch)
    rep = compress(cfg, work / f"{mode}_s{seed}", resume=True, progress=False)
    lat, m = rep["latency"], rep["latency"]["measured"]
    return {"mode": mode, "seed": seed, "target_speedup": speedup, "dense_top1": rep["dense"]["top1"],
            "top1": rep["compressed"]["top1"], "macs_ratio": round(rep["compressed"]["macs_ratio"], 4),
            "predicted_ms": lat["predicted_ms"], "predicted_speedup": lat["predicted_speedup"],
            "measured_dense_ms": m["dense_ms"], "measured_ms": m["compressed_ms"], "measured_speedup": m["speedup"],
            "speedup_miss": round(m["speedup"] / speedup - 1, 4), "prediction_error": lat["prediction_error"],
            "p50_speedup": m.get("p50_speedup"), "calibration": lat.get("calibration"),
            "ops": rep["arch"]["ops"], "ffn_widths": rep["arch"]["ffn_widths"], "seconds": rep["seconds"]}


def summarize(rows: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    rs = [r for r in rows if r["mode"] == mode]

    def stat(k: str) -> dict[str, float]:
        v = [r[k] for r in rs]
        return {"mean": round(statistics.mean(v), 4), "std": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0}

    return {"n": len(rs), **{k: stat(k) for k in ("top1", "measured_speedup", "speedup_miss", "macs_ratio",
                                                   "prediction_error")},
            "within_5pct": sum(abs(r["speedup_miss"]) <= 0.05 for r in rs)}


def markdown(res: dict[str, Any]) -> str:
    env, s = res["environment"], res["summary"]
    lines = [f"# MACs-targeted vs latency-targeted compression (digits, ONNX Runtime CPU, batch {res['batch']})", "",
             f"Goal: {res['target_speedup']}x faster than the dense {MODEL} (measured after fine-tuning: dense and "
             f"compressed timed interleaved in {SESSIONS} independent sessions, the median session's speedup). MACs-targeted: `--target-ratio {1 / res['target_speedup']:.4g}`. "
             f"Latency-targeted: `--target-speedup {res['target_speedup']} --latency-lut` (table profiled here, "
             f"`latency_lut_digits.json`). Search {res['plan']['search_epochs']} epochs, fine-tune "
             f"{res['plan']['finetune_epochs']} epochs, soft distillation from the shipped teacher. Machine: "
             f"{env['cpu']} ({', '.join(env['cpu_flags'])}), {env['threads']} threads, torch {env['torch']}; "
             f"compute summed over the runs {res['wall_s'] / 60:.0f} min.", "",
             "| mode | seed | top-1 | MACs ratio | predicted speedup | measured speedup | miss vs goal | prediction error |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['mode']} | {r['seed']} | {r['top1']:.2f} | {100 * r['macs_ratio']:.1f}% | "
                     f"{r['predicted_speedup']:.3f}x | {r['measured_speedup']:.3f}x | {100 * r['speedup_miss']:+.1f}% | "
                     f"{100 * r['prediction_error']:+.1f}% |")
    lines += ["", "| mode | top-1 mean ± std | measured speedup mean ± std | miss mean | runs within 5% of the goal |",
              "|---|---:|---:|---:|---:|"]
    for mode in ("macs", "latency"):
        m = s[mode]
        lines.append(f"| {mode} | {m['top1']['mean']:.2f} ± {m['top1']['std']:.2f} | "
                     f"{m['measured_speedup']['mean']:.3f} ± {m['measured_speedup']['std']:.3f} | "
                     f"{100 * m['speedup_miss']['mean']:+.1f}% | {m['within_5pct']} / {m['n']} |")
    cal = [r for r in res["rows"] if r.get("calibration")]
    if cal:
        lines += ["", "Calibration of the latency-targeted derivations before fine-tuning (random weights, candidate "
                      "and dense timed interleaved; asked = predicted speedup given to the derivation):", "",
                  "| seed | iterations (asked -> measured) | chosen: measured before fine-tuning | after fine-tuning |",
                  "|---|---|---:|---:|"]
        for r in cal:
            c = r["calibration"]
            its = "; ".join(f"{i['goal_predicted_speedup']:.3f}x -> {i['measured_speedup']:.3f}x" for i in c["iterations"])
            lines.append(f"| {r['seed']} | {its} | {c['iterations'][c['chosen']]['measured_speedup']:.3f}x | "
                         f"{r['measured_speedup']:.3f}x |")
    lines += ["", "Architectures (attention per block / FFN widths):", ""]
    lines += [f"- {r['mode']}, seed {r['seed']}: {' '.join(r['ops'])} / {' '.join(map(str, r['ffn_widths']))}"
              for r in res["rows"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--speedup", type=float, default=1.5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--search-epochs", type=int, default=8)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--work", default="runs/latency_digits")
    ap.add_argument("--only", default=None, help="one run, MODE:SEED (its row goes to WORK/rows/)")
    ap.add_argument("--summarize", action="store_true", help="write the results from WORK/rows/ (the seeds given)")
    args = ap.parse_args()
    work, t0 = Path(args.work), time.perf_counter()
    rows_dir = work / "rows"
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.summarize:
        import json

        rows = [json.loads((rows_dir / f"{mode}_s{seed}.json").read_text()) for seed in seeds
                for mode in ("macs", "latency")]
        return write_results(work, args, rows, sum(r["seconds"] for r in rows))
    plan = DemoPlan(search_epochs=args.search_epochs, finetune_epochs=args.finetune_epochs)
    split = prepare_digits(work / "data", 0, plan.val_fraction)
    shipped_teacher(plan, 0, split, work / "teacher") or train_teacher(work / "data", work / "teacher", plan, 0,
                                                                       progress=False)
    weights = work / "teacher" / "model.safetensors"
    lut = work / "lut.json"
    if not lut.exists():
        profile_latency(MODEL, lut, batches=(args.batch,), num_classes=10, iters=40)
    shutil.copyfile(lut, OUT / "latency_lut_digits.json")
    runs = [tuple(args.only.split(":"))] if args.only else [(m, str(s)) for s in seeds for m in ("macs", "latency")]
    rows = []
    for mode, seed in runs:
        rows.append(run_one(work, plan, weights, lut, args.batch, args.speedup, mode, int(seed)))
        write_json(rows_dir / f"{mode}_s{seed}.json", rows[-1])
        print(rows[-1], flush=True)
    if args.only:
        return 0
    return write_results(work, args, rows, time.perf_counter() - t0)


def write_results(work: Path, args: argparse.Namespace, rows: list[dict[str, Any]], wall_s: float) -> int:
    res = {"benchmark": "latency_targets_digits", "environment": environment(),
           "data": json_or_none(work / "data" / "split.json"),
           "batch": args.batch, "target_speedup": args.speedup,
           "plan": {"search_epochs": args.search_epochs, "finetune_epochs": args.finetune_epochs},
           "lut": {"file": "latency_lut_digits.json", "environment": load_lut(work / "lut.json").environment},
           "rows": rows, "summary": {m: summarize(rows, m) for m in ("macs", "latency")},
           "wall_s": round(wall_s, 1)}
    write_json(OUT / "latency_targets_digits.json", res)
    write_text(OUT / "latency_targets_digits.md", markdown(res))
    return 0


def json_or_none(p: Path) -> Any:
    import json

    return json.loads(p.read_text()) if p.exists() else None


if __name__ == "__main__":
    raise SystemExit(main())
