"""Helpers shared by the tests (imported by name; conftest.py is not importable reliably)."""
from __future__ import annotations

import torch

from spvit_deploy.spec import ArchSpec, BlockSpec

TINY = "deit_tiny_patch16_224"
TINY_IMG = 64  # 4x4 patch grid: fast, and every conv position is exercised


def random_spec(
    model: str, depth: int, width: int, ops: list[str], img_size: int, num_classes: int = 1000, seed: int = 0,
    empty_ffn_block: int | None = None,
) -> ArchSpec:
    """A spec cycling through `ops`, with random FFN masks (one block may keep no unit)."""
    g = torch.Generator().manual_seed(seed)
    blocks = []
    for i in range(depth):
        n = 0 if i == empty_ffn_block else int(torch.randint(1, width, (1,), generator=g))
        kept = sorted(torch.randperm(width, generator=g)[:n].tolist())
        blocks.append(BlockSpec(attn=ops[i % len(ops)], ffn_kept=tuple(kept)))
    return ArchSpec(model=model, img_size=img_size, num_classes=num_classes, blocks=tuple(blocks), source="test")
