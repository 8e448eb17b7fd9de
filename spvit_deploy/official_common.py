"""What the official importers of every family share (github ziplab/SPViT's formats): reading a
checkpoint or search file, official gate codes -> ops, the depth check, and scattering a trimmed FFN
back to dense width. `official.py` (DeiT, and the entry point) and `official_swin.py` use them."""
from __future__ import annotations

import argparse
import ast
import json
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from .errors import SpvitError
from .spec import op_from_code

StateDict = dict[str, torch.Tensor]
Source = str | os.PathLike[str] | Mapping[str, torch.Tensor]


def load_official_state(path: str | os.PathLike[str]) -> StateDict:
    """The `model` state dict of an official checkpoint (training extras such as `args` allowed)."""
    from .models import read_state_dict

    safe = getattr(torch.serialization, "safe_globals", None)  # the official code saves args (a Namespace)
    with safe([argparse.Namespace]) if safe else nullcontext():
        return read_state_dict(path)


def state_of(src: Source, label: str) -> tuple[StateDict, str]:
    """The state dict and how error messages name it (the path, or `label` for an in-memory dict)."""
    if isinstance(src, Mapping):
        return {k.removeprefix("module."): v for k, v in src.items()}, label
    return load_official_state(src), str(src)


def parse_indicators(value: str | Sequence[Any]) -> tuple[str, ...]:
    """Per-block ops from official gate codes `[[1,0,0],[1,1,0],[1,1,1],...]`: JSON or Python text,
    a list, or an official fine-tune config file (its `assigned_indicators`)."""
    where, codes = "--indicators", value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            p = Path(text)
            if not p.is_file():
                raise SpvitError(f"--indicators '{text}' is neither a list like [[1,0,0],...] nor a config file")
            where = str(p)
            try:
                cfg = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise SpvitError(f"{p}: not valid JSON; give an official fine-tune config or the list itself") from None
            codes = cfg.get("assigned_indicators") if isinstance(cfg, dict) else cfg
        else:
            try:
                codes = json.loads(text)
            except json.JSONDecodeError:
                try:
                    codes = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise SpvitError(f"--indicators is not a list of gate codes: {text[:60]!r}") from None
    if not isinstance(codes, (list, tuple)) or not codes:
        raise SpvitError(
            f"{where}: expected a non-empty list of [g_1x1, g_3x3, g_msa] codes, one per block "
            "(search configs have none; use the *_ft config)"
        )
    ops = []
    for i, c in enumerate(codes):
        if not (isinstance(c, (list, tuple)) and len(c) == 3
                and all(isinstance(v, (int, float)) and v in (0, 1) for v in c)):
            raise SpvitError(f"{where}: block {i} indicator {c!r} is not three 0/1 gate values like [1, 1, 0]")
        try:
            ops.append(op_from_code(c))
        except SpvitError as e:
            raise SpvitError(f"{where}: block {i}: {e}") from None
    return tuple(ops)


def check_depth(n: int, depth: int, model: str, what: str) -> None:
    if n < depth:
        raise SpvitError(f"block {n}: {what} has no entry for it ({n} blocks, model '{model}' has {depth})")
    if n > depth:
        raise SpvitError(f"block {depth}: {what} lists {n} blocks but model '{model}' has {depth}")


def scatter_ffn(trimmed: torch.Tensor, dense: torch.Tensor, kept: Sequence[int], columns: bool) -> torch.Tensor:
    """A trimmed FFN tensor placed at its `kept` units of a zero tensor shaped like `dense` (rows of fc1's
    weight and bias, columns of fc2's weight)."""
    idx = torch.tensor(list(kept), dtype=torch.long)
    full = torch.zeros_like(dense)
    if columns:
        full[:, idx] = trimmed.to(dense.dtype)
    else:
        full[idx] = trimmed.to(dense.dtype)
    return full
