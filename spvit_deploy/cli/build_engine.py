"""`spvit-deploy build-engine`: a run folder or an ONNX graph -> a TensorRT plan + JSON sidecar.

Python: `graph, info = prepare_graph("m.trt.onnx", run=RUN, fp16=True, plugins=True)`, then
`build_engine(graph, "m.plan", BuildSettings(fp16=True, plugins=True))` (`spvit_deploy.engine.build`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_json_option, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="build a TensorRT engine (strongly typed; fp16 and Triton-kernel plugins optional)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder: its plain network is exported to ONNX first")
    src.add_argument("--onnx", help="an ONNX graph from 'spvit-deploy export' (fp32, or already --fp16/--plugins)")
    p.add_argument("--out", required=True, help="engine file to write, e.g. model.plan (sidecar: model.json)")
    p.add_argument("--fp16", action="store_true",
                   help="convert to an fp16 graph first (LayerNorm, Softmax, reductions, classifier stay fp32)")
    p.add_argument("--plugins", action="store_true",
                   help="replace each conv block by the SpvitConvAttn plugin (fused Triton kernel)")
    p.add_argument("--plugin-kernels", default="1,3",
                   help="conv blocks to replace by kernel size (1,3 = all; 3 = leave 1x1 blocks to TensorRT's GEMMs)")
    p.add_argument("--plugin-impl", choices=("aot", "jit"), default="aot",
                   help="aot: kernels compiled into the engine (no Python at run time, TensorRT 10.9+); "
                        "jit: Python callbacks (older TensorRT)")
    g = p.add_argument_group("optimization profile (batch axis)")
    g.add_argument("--min-batch", type=int, default=1)
    g.add_argument("--opt-batch", type=int, default=16)
    g.add_argument("--max-batch", type=int, default=64)
    g.add_argument("--opt-batches", default=None,
                   help="one profile per batch, each tuned at that batch (e.g. 1,16,64; replaces --opt-batch)")
    p.add_argument("--workspace-gb", type=float, default=None, help="builder workspace limit (default: TensorRT's)")
    p.add_argument("--timing-cache", default=None,
                   help="timing cache file reused and updated across builds (default: tensorrt.timing-cache "
                        "beside --out; 'none' disables)")
    p.add_argument("--optimization-level", type=int, default=None, help="builder optimization level 0-5")
    p.add_argument("--ptx-version", type=int, default=None,
                   help="cap the PTX ISA of plugin kernels (e.g. 84) for older drivers")
    p.add_argument("--keep-onnx", default=None,
                   help="where to keep the graph the engine is built from (default: <out stem>.trt.onnx)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..engine.build import BuildSettings, build_engine, build_graph_path
    from ..passes.prepare import prepare_graph
    from ..engine.device import MIN_TRT, gpu_info, require_tensorrt

    from ..errors import SpvitError

    out = Path(args.out)
    try:
        kernels = tuple(int(k) for k in args.plugin_kernels.split(",") if k.strip())
    except ValueError:
        kernels = ()
    if not kernels or set(kernels) - {1, 3}:
        raise SpvitError(f"--plugin-kernels takes 1, 3 or 1,3, not '{args.plugin_kernels}'")
    try:
        opts = tuple(int(b) for b in args.opt_batches.split(",") if b.strip()) if args.opt_batches else ()
    except ValueError:
        raise SpvitError(f"--opt-batches takes comma-separated integers, not '{args.opt_batches}'") from None
    cache = args.timing_cache
    if cache is None:
        cache = str(out.parent / "tensorrt.timing-cache")
    elif cache.lower() == "none":
        cache = None
    settings = BuildSettings(
        fp16=args.fp16, plugins=args.plugins, plugin_impl=args.plugin_impl, min_batch=args.min_batch,
        opt_batch=args.opt_batch, max_batch=args.max_batch, opt_batches=opts, workspace_gb=args.workspace_gb,
        timing_cache=cache,
        optimization_level=args.optimization_level, ptx_version=args.ptx_version, verbose=args.verbose,
    )
    require_tensorrt(MIN_TRT)  # before any export: say at once what is missing
    gpu_info()
    graph, info = prepare_graph(args.keep_onnx or build_graph_path(out), run=args.run, onnx=args.onnx,
                                fp16=args.fp16, plugins=args.plugins, plugin_kernels=kernels)
    meta = build_engine(graph, out, settings, source=info, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print_json(meta)
    else:
        plugins = ", ".join(f"{p['count']} x {p['name']} ({p['implementation']})" for p in meta["plugins"]) or "none"
        print(f"wrote {out} ({meta['precision']}, TensorRT {meta['tensorrt_version']}, {meta['gpu']} "
              f"sm_{meta['compute_capability'].replace('.', '')}, batch {meta['profile']['min']}-"
              f"{meta['profile']['max']} opt {','.join(str(q['opt']) for q in meta['profiles'])}, plugins: {plugins}, "
              f"{meta['build_seconds']} s) and {Path(out).with_suffix('.json')}")
    return 0
