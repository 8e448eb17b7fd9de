"""Data: ImageFolder checks with one-line errors, seeded augmentation, the resumable sampler."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.models import create_dense
from spvit_deploy.train.config import DataConfig
from spvit_deploy.train.data import build_data
from spvit_deploy.train.folders import check_image_folder

from train_testing import NANO


def test_layout_errors(digits, tmp_path) -> None:
    assert check_image_folder(digits) == [str(i) for i in range(10)]
    with pytest.raises(SpvitError, match="does not exist"):
        check_image_folder(tmp_path / "missing")
    bad = tmp_path / "bad"
    shutil.copytree(digits / "train", bad / "train")
    with pytest.raises(SpvitError, match="has no val/ folder"):
        check_image_folder(bad)
    shutil.copytree(digits / "val", bad / "val")
    (bad / "train" / "10").mkdir()
    with pytest.raises(SpvitError, match="class folder .*train/10' has no images"):
        check_image_folder(bad)
    (bad / "train" / "10").rmdir()
    shutil.rmtree(bad / "val" / "9")
    with pytest.raises(SpvitError, match="different classes"):
        check_image_folder(bad)


def test_augmentation_is_seeded_per_sample_and_leaves_global_rngs_alone(digits) -> None:
    model = create_dense(NANO, num_classes=10)
    data = build_data(DataConfig(root=str(digits), batch_size=4), model, seed=3)
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    before = (torch.rand(1), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    a = data.train[5][0]
    after = (torch.rand(1), random.random(), np.random.rand())
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]
    torch.manual_seed(123)
    assert torch.equal(a, data.train[5][0])  # the same view whatever the global RNG
    data.train.epoch = 1
    assert not torch.equal(a, data.train[5][0])  # another epoch, another view


def test_sampler_skips_consumed_batches_and_splits_ranks(digits) -> None:
    model = create_dense(NANO, num_classes=10)
    cfg = DataConfig(root=str(digits), batch_size=4)
    data = build_data(cfg, model, seed=0)
    assert data.steps_per_epoch == 60 // 4
    full = [y.tolist() for _, y in data.train_loader(2)]
    assert [y.tolist() for _, y in data.train_loader(2, skip_batches=5)] == full[5:]
    assert [y.tolist() for _, y in data.train_loader(3)] != full  # a new permutation each epoch
    ranks = [build_data(cfg, model, seed=0, world=2, rank=r) for r in (0, 1)]
    for d in ranks:
        d.sampler.set_epoch(0)
    idx = [list(d.sampler) for d in ranks]
    assert not set(idx[0]) & set(idx[1]) and ranks[0].steps_per_epoch == 60 // 8


def test_too_few_images_for_a_batch(digits) -> None:
    with pytest.raises(SpvitError, match="fewer than one batch"):
        build_data(DataConfig(root=str(digits), batch_size=64), create_dense(NANO, num_classes=10), seed=0)
