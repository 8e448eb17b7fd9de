"""Option groups shared by several subcommands, and output helpers."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_model_options(p: argparse.ArgumentParser, weights: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="deit_t|deit_s|deit_b or a timm ViT name (vit_small_patch16_224)")
    g.add_argument("--img-size", type=int, default=None, help="input resolution (default: the spec's or the model's)")
    g.add_argument("--num-classes", type=int, default=None, help="classifier width (default: the spec's or 1000)")
    if weights:
        w = g.add_mutually_exclusive_group()
        w.add_argument("--pretrained", action="store_true", help="download timm/HF hub weights (needs network)")
        w.add_argument("--checkpoint", default=None, help="local dense weights: .pth (official DeiT or timm), .bin, .safetensors")


def add_arch_option(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--arch", required=required, help="architecture spec: paper:<name>, a JSON file or a run folder")


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
