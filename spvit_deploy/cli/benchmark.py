"""`spvit-deploy benchmark`: dense vs compressed latency/throughput/memory per backend and batch size.

Python: `spvit_deploy.bench.benchmark(out, model="deit_b", arch="paper:deit_base",
settings=BenchSettings(backends=("onnxruntime",), batches=(1, 16)))`.
"""
from __future__ import annotations

import argparse
import sys

from .common import add_json_option, add_model_options, model_source, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="time the dense and the compressed model side by side")
    add_model_options(p, run=True)
    p.add_argument("--backends", default="onnxruntime",
                   help="comma-separated: onnxruntime, onnxruntime-cuda, torch, torch-cuda, tensorrt")
    p.add_argument("--batch", default="1,16", help="comma-separated batch sizes")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable CPUs)")
    p.add_argument("--iters", type=int, default=30, help="timed iterations per model, backend and batch")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5, help="interleaved blocks the iterations are split into")
    p.add_argument("--pad-widths", type=int, choices=(8, 16, 64), default=None,
                   help="pad the compressed model's FFN widths in its ONNX graph")
    p.add_argument("--profile", action="store_true",
                   help="also profile both ONNX graphs per batch size with ONNX Runtime's profiler: kernel time "
                        "per kind of op (linear layers, attention, LayerNorm, Adds, ...) in the report")
    p.add_argument("--out", required=True, help="folder for results.json, report.md and latency.png")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..bench.backends import parse_backends
    from ..bench.harness import benchmark
    from ..bench.settings import BenchSettings, parse_batches

    settings = BenchSettings(
        backends=tuple(parse_backends(args.backends)), batches=parse_batches(args.batch), threads=args.threads,
        iters=args.iters, warmup=args.warmup, rounds=args.rounds, pad_widths=args.pad_widths,
        profile=args.profile,
    )
    res = benchmark(args.out, **model_source(args).kwargs(), settings=settings,
                    log=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        print_json({"speedups": res["speedups"], "skipped": res["skipped"], "out": str(args.out)})
        return 0
    for s in res["speedups"]:
        print(f"{s['model']} {s['backend']:<12} batch {s['batch']:>3}: p50 speedup {s['p50_speedup']:.2f}x "
              f"(MACs ratio {s['macs_ratio']:.2f}x)")
    for s in res["skipped"]:
        print(f"skipped {s['backend']}: {s['reason']}")
    print(f"wrote {args.out}/results.json, report.md, latency.png")
    return 0
