"""`spvit-deploy verify`: dense == supernet == materialized (and later stages), with a report.

Python: `spvit_deploy.verify("deit_t", "paper:deit_tiny").to_dict()`.
"""
from __future__ import annotations

import argparse

from .common import add_json_option, add_model_options, model_source, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="check that every stage computes the same function")
    add_model_options(p, weights=("pretrained", "checkpoint"))
    p.add_argument("--stages", default="", help="extra comma-separated stages after supernet,materialize")
    p.add_argument("--fused", action="store_true",
                   help="add the 'fused' stage: conv blocks as fused Triton kernels (interpreter on CPU)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import SpvitError
    from ..verification import verify

    if args.pretrained:
        raise SpvitError("verify uses random weights or --checkpoint; --pretrained is not needed for exactness checks")
    stages = tuple(s for s in args.stages.split(",") if s)
    if args.fused and "fused" not in stages:
        stages += ("fused",)
    if "fused" in stages:
        from ..fused import prepare_interpreter

        prepare_interpreter()  # before timm imports triton
    src = model_source(args)
    report = verify(src.model, src.arch, **src.kwargs("checkpoint", "img_size", "num_classes"), stages=stages,
                    batch=args.batch, seed=args.seed)
    if args.json:
        print_json(report.to_dict())
    else:
        for c in report.checks:
            print(f"{'ok  ' if c.ok else 'FAIL'} {c.stage:<12} max_abs_diff={c.max_abs_diff:.3g}")
            if c.detail.get("skipped"):
                print(f"     {c.stage} not run: {c.detail.get('reason')}")
        print("ok" if report.ok else "FAILED")
    return 0 if report.ok else 1
