"""`spvit-deploy import-official`: an official SPViT (ziplab/SPViT) fine-tuned checkpoint -> a run
folder; an official search file -> an architecture spec.

Python: `plain, spec = spvit_deploy.official.import_official(ckpt, "deit_b", arch="paper:deit_base")`
then `save_run(plain, spec, out)`; `spec_from_search(file, "deit_b", ops=parse_indicators(codes))`.
"""
from __future__ import annotations

import argparse
import json
import sys

from .common import add_json_option, add_model_options, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help="convert an official SPViT checkpoint to a run folder, or a search file to a spec",
        description="CHECKPOINT --out RUN: import fine-tuned weights. Without CHECKPOINT: "
        "--search-ckpt FILE --spec-out arch.json derives a spec from an official search file.",
    )
    p.add_argument("checkpoint", nargs="?", default=None, help="official fine-tuned checkpoint ({'model': state_dict})")
    add_model_options(p, arch=False, weights=())  # --img-size/--num-classes: checked against the checkpoint's
    ops = p.add_mutually_exclusive_group()
    ops.add_argument("--arch", default=None, help="ops and kept FFN units: paper:<name>, a spec JSON or a run folder")
    ops.add_argument(
        "--indicators", default=None,
        help="per-block gate codes as the official configs write them, '[[1,0,0],[1,1,0],[1,1,1],...]', "
        "or an official *_ft config JSON (its assigned_indicators)",
    )
    p.add_argument(
        "--search-ckpt", default=None,
        help="official search file (ffn_indicators/*.pth or a search checkpoint): the kept FFN units, "
        "and the ops when it holds kernel_thresholds and --indicators is not given",
    )
    p.add_argument("--out", default=None, help="run folder to write (needs CHECKPOINT)")
    p.add_argument("--spec-out", default=None, help="write the architecture spec JSON here")
    add_json_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..errors import SpvitError
    from ..official import PLACEHOLDER_KEPT, import_official, parse_indicators, spec_from_search

    if args.checkpoint is None:
        if args.search_ckpt is None or args.spec_out is None:
            raise SpvitError("give CHECKPOINT --out RUN to import weights, or --search-ckpt FILE --spec-out SPEC.json")
        if args.out is not None or args.arch is not None:
            raise SpvitError("--out and --arch need a fine-tuned CHECKPOINT; without one only --spec-out is written")
        ops = parse_indicators(args.indicators) if args.indicators is not None else None
        spec = spec_from_search(args.search_ckpt, args.model, ops=ops, img_size=args.img_size, num_classes=args.num_classes)
        spec.save(args.spec_out)
        if args.json:
            print_json({"spec": args.spec_out, "ops": spec.ops, "ffn_widths": [b.ffn_width for b in spec.blocks]})
        else:
            print(f"wrote {args.spec_out} ({', '.join(spec.ops)})")
        return 0

    from ..run import META_FILE, save_run

    if args.out is None:
        raise SpvitError("--out RUN_DIR is required to import a checkpoint")
    plain, spec = import_official(
        args.checkpoint, args.model, arch=args.arch, indicators=args.indicators, search=args.search_ckpt,
        img_size=args.img_size, num_classes=args.num_classes,
    )
    if spec.extra.get("ffn_kept") == PLACEHOLDER_KEPT:
        print("note: FFN kept units are unknown without --search-ckpt; arch.json records positions 0..w-1 "
              "(the imported network is exact)", file=sys.stderr)
    source = {"official_checkpoint": args.checkpoint, "arch": args.arch, "indicators": args.indicators,
              "search_ckpt": args.search_ckpt}
    out = save_run(plain, spec, args.out, source={k: v for k, v in source.items() if v is not None})
    if args.spec_out:
        spec.save(args.spec_out)
    saved = json.loads((out / META_FILE).read_text())
    result = {"run": str(out), "ops": spec.ops, "gmacs": saved["gmacs"], "params": saved["params"]}
    if args.json:
        print_json(result)
    else:
        print(f"wrote {out} ({saved['gmacs']} GMACs, {saved['params'] / 1e6:.2f} M params)")
    return 0
