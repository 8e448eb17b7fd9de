"""`spvit-deploy demo`: offline, on real data: a ViT-Nano teacher pre-trained on scikit-learn's
digits (shipped; `--train-teacher` trains it here), compressed with SPViT to half its MACs,
fine-tuned, materialized, exported and benchmarked. `--target-speedup R` compresses to R times the dense
model's measured speed on ONNX Runtime (CPU, batch 16) instead, with a latency table profiled into the
--out folder.

Python: `spvit_deploy.run_demo("demo")`, `run_demo("demo", target_speedup=1.5)`. Re-running continues or
reuses what is in DIR.
"""
from __future__ import annotations

import argparse

from .common import add_json_option, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="the offline demo on real digits: teacher, SPViT compression, report")
    p.add_argument("--out", required=True, help="folder for data, teacher, run and report.json")
    p.add_argument("--quick", action="store_true", help="a tiny subset and a few epochs (a smoke test, ~1 min)")
    p.add_argument("--resume", action="store_true",
                   help="accepted (an interrupted run says to add it); the demo always continues where it stopped")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-teacher", action="store_true",
                   help="train the dense teacher from scratch (~3-6 min) instead of using the shipped pre-trained one")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-export", action="store_true", help="skip ONNX export and benchmark")
    p.add_argument("--target-speedup", type=float, default=None, metavar="R",
                   help="latency-targeted: profile a latency table (lut.json in --out) on ONNX Runtime (CPU, batch "
                        "16), compress to R times the dense model's speed, calibrated and measured by timing "
                        "(instead of half the MACs)")
    p.add_argument("--no-progress", action="store_true")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    rep = run_demo(args.out, quick=args.quick, seed=args.seed, export=not args.no_export,
                   progress=not args.no_progress, threads=args.threads,
                   train_from_scratch=args.train_teacher, target_speedup=args.target_speedup)
    if args.json:
        print_json(rep)
        return 0
    d, c = rep["dense"], rep["compressed"]
    print(f"dense teacher:    top-1 {d['top1']:.2f}%  {d['gmacs']:.4g} GMACs")
    print(f"SPViT compressed: top-1 {c['top1']:.2f}%  {c['gmacs']:.4g} GMACs ({100 * c['macs_ratio']:.1f}% of dense)")
    lat = rep.get("latency")
    if lat:
        m = lat["measured"]
        print(f"speedup ({lat['backend']}, batch {lat['batch']}): target {lat['target_speedup']:g}x, predicted "
              f"{lat['predicted_speedup']:.3f}x, measured {m['speedup']:.3f}x ({100 * lat['miss']:+.1f}%)")
    print(f"{rep['seconds']:.0f} s; report: {args.out}/report.md")
    return 0
