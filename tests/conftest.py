"""Shared fixtures: offline hub, Triton's interpreter on machines without a GPU, small models."""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if shutil.which("nvidia-smi") is None:  # before anything imports triton (timm does)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from spvit_deploy.spec import ArchSpec  # noqa: E402

from spvit_testing import TINY, TINY_IMG, random_spec  # noqa: E402


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
