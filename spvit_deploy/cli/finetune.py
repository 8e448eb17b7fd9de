"""`spvit-deploy finetune`: fine-tune a searched (or given) architecture with distillation, then materialize.

Python: `spvit_deploy.train.finetune(config, out, arch=None, supernet=None)`; by default the spec
and the searched weights come from `out` itself (a folder `spvit-deploy search` wrote).
"""
from __future__ import annotations

import argparse

from .train_options import add_train_options, config_from_args, print_result


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="fine-tune an architecture (pinned gates) and materialize the plain network")
    add_train_options(p, ("finetune",))
    p.add_argument("--arch", default=None, help="spec: paper:<name>, a JSON file or a run folder (default: OUT/arch.json)")
    p.add_argument("--supernet", default=None,
                   help="searched weights: a search run folder or its search.safetensors (default: OUT's, if any; "
                        "else the dense weights with uniform head mixing)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.pipeline import finetune

    rep = finetune(config_from_args(args), args.out, arch=args.arch, supernet=args.supernet, resume=args.resume,
                   device=args.device, threads=args.threads, progress=not args.no_progress)
    if rep:
        print_result(args, rep, args.out)
    return 0
