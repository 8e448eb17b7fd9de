"""`spvit-deploy materialize`: supernet weights + spec -> a run folder with the plain network.

Python: `save_run(materialize(supernet, spec), spec, out)`; see `spvit_deploy.materialization`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_arch_option, add_json_option, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="turn a supernet checkpoint and a spec into a plain run folder")
    p.add_argument("--model", required=True, help="deit_t|deit_s|deit_b or a timm ViT name")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--supernet", default=None, help="supernet checkpoint (from search/finetune)")
    src.add_argument("--checkpoint", default=None, help="dense weights (uniform head mixing, identity BatchNorm)")
    add_arch_option(p)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--out", required=True, help="run folder to write")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..materialization import materialize
    from ..models import create_dense
    from ..run import META_FILE, save_run
    from ..spec import load_spec
    from ..supernet import load_supernet_checkpoint, to_supernet

    spec = load_spec(args.arch).with_overrides(img_size=args.img_size, num_classes=args.num_classes)
    dense = create_dense(args.model, checkpoint=args.checkpoint, num_classes=spec.num_classes, img_size=spec.img_size)
    supernet = to_supernet(dense)
    if args.supernet:
        load_supernet_checkpoint(supernet, args.supernet)
    elif not args.checkpoint:
        print("note: no --supernet or --checkpoint given; materializing random weights", file=sys.stderr)
    plain = materialize(supernet.eval(), spec)
    out = save_run(plain, spec, args.out, source={"supernet": args.supernet, "checkpoint": args.checkpoint})
    saved = json.loads((out / META_FILE).read_text())
    meta = {"run": str(out), "gmacs": saved["gmacs"], "params": saved["params"]}
    if args.json:
        print_json(meta)
    else:
        print(f"wrote {out} ({meta['gmacs']} GMACs, {meta['params'] / 1e6:.2f} M params)")
    return 0
