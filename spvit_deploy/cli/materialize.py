"""`spvit-deploy materialize`: supernet weights + spec -> a run folder with the plain network.

Python: `save_run(materialize(supernet, spec), spec, out)`; see `spvit_deploy.materialization`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_json_option, add_model_options, model_source, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="turn a supernet checkpoint and a spec into a plain run folder")
    add_model_options(p, weights=("supernet", "checkpoint"))
    p.add_argument("--out", required=True, help="run folder to write")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..materialization import materialize
    from ..run import META_FILE, save_run
    from ..supernet import load_supernet_checkpoint, to_supernet

    src = model_source(args)
    spec = src.spec()
    dense = src.dense(spec, seed=None)
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
