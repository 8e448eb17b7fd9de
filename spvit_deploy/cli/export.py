"""`spvit-deploy export`: a run folder (or model + spec) -> a checked ONNX graph with deploy metadata.

Python: `export_onnx(load_export_model(run=RUN).module, "model.onnx")` (`spvit_deploy.export`).
"""
from __future__ import annotations

import argparse

from .common import add_json_option, add_model_options, model_source, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="export a compressed (or dense) model to ONNX, checked against PyTorch")
    add_model_options(p, run=True)
    p.add_argument("--dense", action="store_true", help="export the dense model of the same name instead")
    p.add_argument("--out", required=True, help="ONNX file to write (atomically)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--pad-widths", type=int, choices=(8, 16, 64), default=None,
                   help="pad FFN widths up to a multiple with zero units (same outputs)")
    p.add_argument("--fp16", action="store_true",
                   help="write the fp16 graph build-engine uses (LayerNorm, Softmax, reductions, classifier fp32)")
    p.add_argument("--plugins", action="store_true",
                   help="replace each conv block by one SpvitConvAttn node (the TensorRT plugin)")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import export_onnx
    from ..export.source import load_export_model

    em = load_export_model(**model_source(args).kwargs(), dense=args.dense)
    if args.fp16 or args.plugins:  # export fp32 (parity-checked), then the engine graph passes
        from ..passes.prepare import export_for_engine

        rep = export_for_engine(em, args.out, fp16=args.fp16, plugins=args.plugins, opset=args.opset,
                                pad_widths=args.pad_widths)
    else:
        rep = export_onnx(em.module, args.out, spec=em.spec, variant=em.variant, opset=args.opset,
                          pad_widths=args.pad_widths)
    if args.json:
        d = rep.to_dict()
        d["metadata"] = {k: v for k, v in d["metadata"].items() if k != "spec"}
        print_json(d)
    else:
        diffs = ", ".join(f"batch {b}: {v:.2g}" for b, v in rep.parity.items())
        print(f"wrote {rep.path} ({em.variant}, {rep.metadata['gmacs']} GMACs, {sum(rep.op_counts.values())} nodes, "
              f"{rep.size_bytes / 2**20:.1f} MiB); ONNX Runtime vs PyTorch max abs diff {diffs}")
    return 0
