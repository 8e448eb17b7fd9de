"""Option groups shared by several subcommands (the model options, parsed into a
`spvit_deploy.model_source.ModelSource`), and output helpers."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any


WEIGHT_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "pretrained": ("--pretrained", {"action": "store_true", "help": "dense weights from the timm / HF hub (needs network)"}),
    "checkpoint": ("--checkpoint", {"default": None, "help": "local dense weights: .pth (official DeiT or timm), .bin, "
                                    ".safetensors; without it the weights are random"}),
    "no-pretrained": ("--no-pretrained", {"action": "store_true", "help": "random dense weights (smoke tests)"}),
    "supernet": ("--supernet", {"default": None, "help": "supernet checkpoint (from search/finetune)"}),
}


def add_model_options(
    p: argparse.ArgumentParser,
    *,
    run: bool = False,
    arch: bool = True,
    weights: tuple[str, ...] = ("checkpoint",),
    weights_required: bool = False,
) -> None:
    """The one definition of the model options: [--run RUN_DIR |] --model M [--arch SPEC] [weights]
    [--img-size S] [--num-classes N]. With `run`, a run folder may replace --model/--arch (none is required);
    `weights` picks the mutually exclusive weight options (see `WEIGHT_OPTIONS`). `model_source(args)` parses them."""
    g = p.add_argument_group("model (a run folder, or a model name and a spec)" if run else "model")
    if run:
        g.add_argument("--run", default=None, help="run folder (arch.json + model.safetensors)")
    g.add_argument("--model", required=not run, help="deit_t|deit_s|deit_b, swin_t|swin_s|swin_b, or a timm ViT or Swin name (vit_small_patch16_224)")
    if arch:
        g.add_argument("--arch", required=not run, default=None,
                       help="architecture spec: paper:<name>, a JSON file or a run folder")
    if weights:
        w = g.add_mutually_exclusive_group(required=weights_required)
        for name in weights:
            flag, kw = WEIGHT_OPTIONS[name]
            w.add_argument(flag, **kw)
    g.add_argument("--img-size", type=int, default=None,
                   help="input resolution (default: the spec's, the checkpoint's or the model's)")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classifier width (default: the spec's, the checkpoint's, the class folders' or 1000)")


def model_source(args: argparse.Namespace) -> Any:
    """The `spvit_deploy.model_source.ModelSource` the model options describe."""
    from ..model_source import ModelSource

    return ModelSource(**{f.name: getattr(args, f.name, None) for f in fields(ModelSource)})


def add_json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
