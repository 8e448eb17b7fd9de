"""Shared by the benchmark tests: a CPU-sized model and a spec for it (one of each op type)."""
from __future__ import annotations

import torch

from spvit_deploy.spec import ArchSpec, BlockSpec

NANO = "vit_nano_patch4_32"  # 32 px, 8x8 grid, width 64, depth 6 (spvit_deploy.zoo)


def nano_spec(seed: int = 0) -> ArchSpec:
    g = torch.Generator().manual_seed(seed)
    ops = ["conv3x3", "msa", "conv1x1", "skip", "msa", "conv3x3"]
    blocks = tuple(BlockSpec(op, tuple(sorted(torch.randperm(256, generator=g)[:100].tolist()))) for op in ops)
    return ArchSpec(model=NANO, img_size=32, num_classes=10, blocks=blocks, source="test:nano")
