"""`spvit-deploy compress`: search -> derive the architecture at the target -> fine-tune -> materialize.

Python: `spvit_deploy.train.compress(config_for(model, data, target_ratio=0.5, ...), out)`.
Under `torchrun --nproc-per-node N` it trains data-parallel.
"""
from __future__ import annotations

import argparse

from .latency_options import print_latency
from .train_options import add_train_options, config_from_args, print_result


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="compress a ViT: gate search, fine-tuning with distillation, materialize")
    add_train_options(p, ("search", "finetune"))
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.pipeline import compress

    rep = compress(config_from_args(args), args.out, resume=args.resume, device=args.device, threads=args.threads,
                   progress=not args.no_progress)
    if rep:  # rank 0
        print_result(args, rep, args.out)
        print_latency(args, rep)
    return 0
