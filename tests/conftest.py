"""Shared fixtures: offline hub, Triton's interpreter on machines without a GPU, small models."""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if shutil.which("nvidia-smi") is None:  # before anything imports triton (timm does)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from spvit_deploy.spec import ArchSpec, BlockSpec  # noqa: E402

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


@pytest.fixture
def tiny_spec() -> ArchSpec:
    """deit_tiny at 64 px with every op type and one fully pruned FFN."""
    return random_spec(TINY, 12, 768, ["conv3x3", "conv1x1", "skip", "msa"], TINY_IMG, num_classes=10,
                       empty_ffn_block=5)


@pytest.fixture
def tiny_dense() -> torch.nn.Module:
    from spvit_deploy.models import create_dense

    torch.manual_seed(0)
    return create_dense("deit_t", num_classes=10, img_size=TINY_IMG)
