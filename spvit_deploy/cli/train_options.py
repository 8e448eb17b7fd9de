"""Options shared by `compress`, `search` and `finetune`, and their translation into a `TrainConfig`.

Every option left out takes the official recipe's default for the model's size
(`spvit_deploy.train.config.recipe_for`).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import add_json_option, add_model_options
from .latency_options import add_latency_options, latency_given


def add_train_options(p: argparse.ArgumentParser, stages: tuple[str, ...]) -> None:
    add_model_options(p, arch=False, weights=("pretrained", "checkpoint", "no-pretrained"), weights_required=True)
    g = p.add_argument_group("data and output")
    g.add_argument("--data", required=True, type=data_argument,
                   help="ImageFolder root with train/<class>/* and val/<class>/*, or fashion-mnist (the files of "
                        "Debian's dataset-fashion-mnist) or fashion-mnist:DIR (a folder with the four IDX files)")
    g.add_argument("--out", required=True, help="run folder to write (or to continue with --resume)")
    if "search" in stages:
        t = g.add_mutually_exclusive_group(required=True)
        t.add_argument("--target-gmacs", type=float, default=None, help="MACs budget in GMACs")
        t.add_argument("--target-ratio", type=float, default=None, help="MACs budget as a fraction of the dense model")
        add_latency_options(p, t)
    o = p.add_argument_group("training (defaults: the official SPViT recipe for the model's size)")
    if "search" in stages:
        o.add_argument("--search-epochs", type=int, default=None)
        o.add_argument("--gate-lr", type=float, default=None, help="gate and head-mixing logits' lr")
        o.add_argument("--lambda", dest="lam", type=float, default=None, help="complexity-loss weight, per GMAC^2")
    if "finetune" in stages:
        o.add_argument("--finetune-epochs", type=int, default=None)
    o.add_argument("--batch-size", type=int, default=None, help="per process (default 64)")
    o.add_argument("--lr", type=float, default=None, help="weights' lr (default 1e-4)")
    o.add_argument("--min-lr", type=float, default=None, help="cosine floor (default 1e-5)")
    o.add_argument("--weight-decay", type=float, default=None)
    o.add_argument("--warmup-epochs", type=float, default=None)
    o.add_argument("--distill", choices=["soft", "hard", "none"], default=None, help="from the dense model (hard)")
    o.add_argument("--distill-alpha", type=float, default=None, help="weight of the distillation loss (0.5)")
    o.add_argument("--distill-tau", type=float, default=None, help="soft distillation temperature (1.0)")
    o.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], default=None,
                   help="autocast dtype (auto: bf16 on GPUs and bf16-capable CPUs)")
    o.add_argument("--clip-grad", type=float, default=None, help="max grad norm per optimizer (5; 0 = off)")
    o.add_argument("--seed", type=int, default=None)
    a = p.add_argument_group("augmentation")
    a.add_argument("--scale", type=float, nargs=2, default=None, metavar=("LO", "HI"), help="crop area (0.08 1)")
    a.add_argument("--hflip", type=float, default=None)
    a.add_argument("--color-jitter", type=float, default=None)
    a.add_argument("--auto-augment", default=None, help="timm policy, e.g. rand-m9-mstd0.5-inc1")
    a.add_argument("--mixup", type=float, default=None)
    a.add_argument("--cutmix", type=float, default=None)
    a.add_argument("--smoothing", type=float, default=None)
    r = p.add_argument_group("run")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    r.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (200)")
    r.add_argument("--workers", type=int, default=None, help="data-loader workers per process (0)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_option(p)


def data_argument(value: str) -> str:
    """--data as the config records it: an ImageFolder path as given; `fashion-mnist:DIR` with DIR absolute
    (a run resumes from any working folder)."""
    from ..train.fashion import PREFIX, parse_source

    source = parse_source(value)
    if source is None or value == PREFIX:
        return value
    return f"{PREFIX}:{source.resolve()}"


DATA_FIELDS = {"batch_size": "batch_size", "workers": "workers", "scale": "scale", "hflip": "hflip",
               "color_jitter": "color_jitter", "auto_augment": "auto_augment", "mixup": "mixup", "cutmix": "cutmix",
               "smoothing": "smoothing"}


def config_from_args(args: argparse.Namespace) -> Any:
    """The `TrainConfig` the options describe (recipe defaults for what was left out)."""
    from ..train.config import DataConfig, config_for

    data = {k: getattr(args, a) for a, k in DATA_FIELDS.items() if getattr(args, a, None) is not None}
    if "scale" in data:
        data["scale"] = tuple(data["scale"])
    given: dict[str, Any] = {
        "target_gmacs": getattr(args, "target_gmacs", None), "target_ratio": getattr(args, "target_ratio", None),
        "pretrained": bool(args.pretrained) or None, "checkpoint": args.checkpoint,
        "distill": args.distill, "distill_alpha": args.distill_alpha, "distill_tau": args.distill_tau,
        "amp": args.amp, "clip_grad": args.clip_grad, "seed": args.seed, "checkpoint_every": args.checkpoint_every,
        "search_epochs": getattr(args, "search_epochs", None), "search_gate_lr": getattr(args, "gate_lr", None),
        "search_lam": getattr(args, "lam", None), "finetune_epochs": getattr(args, "finetune_epochs", None),
        **latency_given(args),
    }
    for stage in ("search", "finetune"):
        given.update({f"{stage}_lr": args.lr, f"{stage}_min_lr": args.min_lr,
                      f"{stage}_weight_decay": args.weight_decay, f"{stage}_warmup_epochs": args.warmup_epochs})
    return config_for(args.model, DataConfig(root=args.data, **data), img_size=args.img_size or 0,
                      num_classes=args.num_classes or 0, **given)


def print_result(args: argparse.Namespace, rep: dict[str, Any], out: str) -> None:
    """One summary (or the report as JSON with --json)."""
    from .common import print_json

    if args.json:
        print_json(rep)
        return
    d, c = rep.get("dense"), rep.get("compressed")
    print(f"wrote {out}")
    if d:
        print(f"dense:      top-1 {d['top1']:.2f}  {d['gmacs']:.4g} GMACs  {d['params'] / 1e6:.2f} M params")
    if c:
        print(f"compressed: top-1 {c['top1']:.2f}  {c['gmacs']:.4g} GMACs  {c['params'] / 1e6:.2f} M params "
              f"({100 * c['macs_ratio']:.1f}% of the dense MACs)")
    elif rep.get("arch"):
        a = rep["arch"]
        print(f"architecture: {a['gmacs']:.4g} GMACs: {' '.join(a['ops'])}", file=sys.stdout)
