"""`spvit-deploy arch-stats`: MACs and parameters, dense vs an architecture spec.

Python: `spvit_deploy.arch_stats("deit_b", "paper:deit_base")`.
"""
from __future__ import annotations

import argparse

from .common import add_arch_option, add_json_option, print_json, table


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="MACs and params of a spec against the dense model")
    p.add_argument("--model", required=True, help="deit_t|deit_s|deit_b or a timm ViT name")
    add_arch_option(p)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..macs import arch_stats

    stats = arch_stats(args.model, args.arch, img_size=args.img_size, num_classes=args.num_classes)
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
