"""Fixtures for the serving tests: one small run folder and one repository exported from it."""
from __future__ import annotations

import copy

import pytest
import torch

from spvit_deploy.spec import ArchSpec, BlockSpec

IMG = 64
CLASSES = 10


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """deit_tiny at 64 px, 10 classes, every attention op, random weights and BatchNorm statistics."""
    from spvit_deploy.materialization import materialize
    from spvit_deploy.models import create_dense
    from spvit_deploy.run import save_run
    from spvit_deploy.supernet import fix_gates, randomize_supernet_state, to_supernet

    g = torch.Generator().manual_seed(0)
    ops = ["conv3x3", "conv1x1", "skip", "msa"]
    blocks = tuple(BlockSpec(ops[i % 4], tuple(sorted(torch.randperm(768, generator=g)[:64].tolist())))
                   for i in range(12))
    spec = ArchSpec(model="deit_tiny_patch16_224", img_size=IMG, num_classes=CLASSES, blocks=blocks, source="test")
    torch.manual_seed(0)
    sn = to_supernet(copy.deepcopy(create_dense("deit_t", num_classes=CLASSES, img_size=IMG)))
    randomize_supernet_state(sn, torch.Generator().manual_seed(1))
    plain = materialize(fix_gates(sn, spec).eval(), spec)
    return save_run(plain, spec, tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="session")
def onnx_repo(run_dir, tmp_path_factory):
    """A repository with the compressed and the dense model, ONNX Runtime backend."""
    from spvit_deploy.serve import export_triton

    repo = tmp_path_factory.mktemp("serve") / "model_repository"
    models = export_triton(run_dir, repo, dense=True)
    return repo, models
