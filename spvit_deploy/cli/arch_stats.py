"""`spvit-deploy arch-stats`: MACs and parameters, dense vs an architecture spec.

Python: `spvit_deploy.arch_stats("deit_b", "paper:deit_base")`.
"""
from __future__ import annotations

import argparse

from .common import add_json_option, add_model_options, model_source, print_json, table


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="MACs and params of a spec against the dense model")
    add_model_options(p, weights=())
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..macs import arch_stats

    src = model_source(args)
    stats = arch_stats(src.model, src.arch, **src.kwargs("img_size", "num_classes"))
    if args.json:
        print_json(stats)
        return 0
    rows = [
        [b["block"], b["attn"], b["ffn_width"], f"{b['attn_macs'] / 1e6:.1f}", f"{b['ffn_macs'] / 1e6:.1f}",
         f"{b['params'] / 1e6:.3f}"]
        for b in stats["blocks"]
    ]
    print(table(rows, ["block", "attn", "ffn", "attn MMACs", "ffn MMACs", "params M"]))
    d, c = stats["dense"], stats["compressed"]
    print(f"\n{stats['model']} @ {stats['img_size']}px")
    print(f"dense:      {d['gmacs']:.3f} GMACs  {d['params'] / 1e6:.2f} M params")
    print(f"compressed: {c['gmacs']:.3f} GMACs  {c['params'] / 1e6:.2f} M params  ({stats['macs_ratio']:.2f}x fewer MACs)")
    return 0
