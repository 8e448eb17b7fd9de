"""`spvit-deploy search`: the gate search alone; writes `arch.json` (at the target), `search.safetensors` and
`search_state.json` (what rebuilds the searched supernet: `spvit_deploy.supernet.load_search(out)`).

Python: `spvit_deploy.train.search(config_for(model, data, target_gmacs=8.4, ...), out)`.
"""
from __future__ import annotations

import argparse

from .latency_options import print_latency
from .train_options import add_train_options, config_from_args, print_result


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="gate search alone: derive an architecture spec at a MACs target")
    add_train_options(p, ("search",))
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.pipeline import search

    rep = search(config_from_args(args), args.out, resume=args.resume, device=args.device, threads=args.threads,
                 progress=not args.no_progress)
    if rep:  # rank 0
        print_result(args, rep, args.out)
        print_latency(args, rep)
    return 0
