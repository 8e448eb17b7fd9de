"""`spvit-deploy profile-latency`: measure the latency table (per-block op and FFN-width latencies plus the
fixed parts) on the deployment runtime, through the export path users deploy.

Python: `spvit_deploy.latency.profile_latency("deit_s", "lut.json", backend="onnxruntime", batches=(1, 16))`.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="measure a latency table for latency targets (compress --target-speedup)")
    p.add_argument("--model", required=True, help="deit_t|deit_s|deit_b or a timm ViT / Swin name")
    p.add_argument("--arch", default=None,
                   help="optional spec (paper:<name>, a JSON file or a run folder): predicted vs measured for it "
                        "after profiling")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "onnxruntime-cuda", "torch",
                                                               "torch-cuda", "tensorrt"])
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (one table each), e.g. 1,16")
    p.add_argument("--fp16", action="store_true", help="fp16 engine (tensorrt only)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable CPUs)")
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None, help="classifier width (default: the model's)")
    p.add_argument("--width-steps", type=int, default=8, help="FFN widths profiled per block geometry (8)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per network and batch (20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", required=True, help="the table to write (lut.json)")
    p.add_argument("--json", action="store_true", help="print the table's summary as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from ..bench.settings import parse_batches
    from ..latency.profile import profile_latency
    from .common import print_json

    lut = profile_latency(args.model, args.out, backend=args.backend, batches=parse_batches(args.batch),
                          fp16=args.fp16, threads=args.threads, img_size=args.img_size, num_classes=args.num_classes,
                          width_steps=args.width_steps, iters=args.iters, warmup=args.warmup,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    rows = []
    for b, t in lut.batches.items():
        row = {"batch": b, "fixed_ms": round(t.fixed_ms, 4), "dense_ms": round(t.dense_ms, 4),
               "attn_ms": [{k: round(v, 4) for k, v in g.attn_ms.items()} for g in t.groups]}
        if args.arch:
            from ..latency.measure import measure_specs
            from ..latency.predict import predict_latency
            from ..spec import resolve_spec

            spec = resolve_spec(args.arch, args.model, img_size=lut.img_size, num_classes=lut.num_classes)
            m = measure_specs({"arch": spec}, lut, (b,), iters=args.iters, warmup=args.warmup)["arch"][b]["p50_ms"]
            row |= {"arch_predicted_ms": round(predict_latency(spec, lut, b).total_ms, 4),
                    "arch_measured_ms": round(m, 4)}
        rows.append(row)
    if args.json:
        print_json({"out": str(args.out), "model": lut.model, "backend": lut.backend, "batches": rows})
        return 0
    for r in rows:
        ops = ", ".join(f"{k} {v:.3f}" for k, v in r["attn_ms"][0].items())
        line = f"batch {r['batch']:>3}: fixed {r['fixed_ms']:.3f} ms, dense {r['dense_ms']:.3f} ms; per block {ops} ms"
        if "arch_measured_ms" in r:
            line += f"; --arch predicted {r['arch_predicted_ms']:.3f} ms, measured {r['arch_measured_ms']:.3f} ms"
        print(line)
    print(f"wrote {args.out}")
    return 0
