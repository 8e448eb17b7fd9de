"""Shared by the export tests (a module of its own: conftest.py is not reliably importable)."""
from __future__ import annotations

import torch

from spvit_deploy.spec import ArchSpec, BlockSpec

IMG = 64
CLASSES = 10


def every_op_spec(seed: int = 0) -> ArchSpec:
    """deit_tiny at 64 px: conv3x3, conv1x1, skip, msa in turn; random FFN masks, block 5 keeps no unit."""
    g = torch.Generator().manual_seed(seed)
    ops = ["conv3x3", "conv1x1", "skip", "msa"]
    blocks = []
    for i in range(12):
        n = 0 if i == 5 else int(torch.randint(1, 768, (1,), generator=g))
        blocks.append(BlockSpec(ops[i % 4], tuple(sorted(torch.randperm(768, generator=g)[:n].tolist()))))
    return ArchSpec(model="deit_tiny_patch16_224", img_size=IMG, num_classes=CLASSES, blocks=tuple(blocks),
                    source="test")
