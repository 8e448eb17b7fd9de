"""Data for training: ImageFolder `train/` and `val/` (or Fashion-MNIST's train and test sets,
`--data fashion-mnist[:DIR]`) with timm's transforms at the model's
input size, mean and std; a resumable, rank-aware sampler; per-sample seeded augmentation.

Augmentation randomness is seeded per (seed, epoch, sample index) and never touches the
global RNGs, so the batches of an epoch are the same whether it runs straight through,
resumes mid-way, or uses data-loader workers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from ..errors import SpvitError
from .config import DataConfig
from .folders import check_image_folder

class SeededDataset(Dataset):
    """Applies `transform` to `base[i]` with python/torch/numpy RNGs seeded from (seed, epoch, i),
    restoring the caller's RNG states afterwards."""

    def __init__(self, base: Dataset, transform: Any, seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, target = self.base[i]
        s = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + i
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(s)
            np.random.seed(s % 2**32)
            torch.manual_seed(s)
            x = self.transform(img)
        random.setstate(py_state)
        np.random.set_state(np_state)
        return x, target


class ResumableSampler(DistributedSampler):
    """A `DistributedSampler` (seeded per-epoch permutation, split across ranks, whole batches only)
    that can skip the batches an interrupted epoch already consumed."""

    def __init__(self, dataset: Dataset, world: int, rank: int, seed: int, batch_size: int) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:  # type: ignore[override]
        super().set_epoch(epoch)
        self.skip = skip_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        usable = len(indices) // self.batch_size * self.batch_size
        return iter(indices[self.skip:usable])

    def __len__(self) -> int:
        return self.num_samples // self.batch_size * self.batch_size - self.skip


@dataclass
class Data:
    """Train/val datasets, the sampler that orders training, and how to iterate them."""

    classes: list[str]
    train: SeededDataset
    val: Dataset
    sampler: ResumableSampler
    cfg: DataConfig
    world: int
    rank: int

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.num_samples // self.cfg.batch_size

    def train_loader(self, epoch: int, skip_batches: int = 0) -> DataLoader:
        self.train.epoch = epoch
        self.sampler.set_epoch(epoch, skip_batches)
        return DataLoader(
            self.train, batch_size=self.cfg.batch_size, sampler=self.sampler, num_workers=self.cfg.workers,
            drop_last=True, generator=torch.Generator(),  # keep the global RNG untouched by loader seeding
        )

    def val_loader(self) -> DataLoader:
        """This rank's share of `val/` (no padding: accuracy sums over ranks are exact)."""
        idx = list(range(self.rank, len(self.val), self.world))  # type: ignore[arg-type]
        bs = self.cfg.eval_batch_size or 2 * self.cfg.batch_size
        return DataLoader(torch.utils.data.Subset(self.val, idx), batch_size=bs, shuffle=False,
                          num_workers=self.cfg.workers, generator=torch.Generator())


def model_data_config(model: torch.nn.Module) -> dict[str, Any]:
    """timm's data config of `model` (mean, std, interpolation, crop), at its actual input size."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    img = tuple(int(s) for s in model.patch_embed.img_size)
    cfg["input_size"] = (int(model.patch_embed.proj.in_channels), *img)
    return cfg


def _datasets(root: str, fashion: Path | None, val_tf: Any) -> tuple[Dataset, Dataset]:
    """(train without transform, val with `val_tf`) as RGB PIL images, from an ImageFolder or Fashion-MNIST."""
    if fashion is not None:
        from torchvision.transforms import Compose

        from .fashion import fashion_datasets, to_rgb

        return fashion_datasets(fashion, to_rgb, Compose([to_rgb, val_tf]))
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(Path(root) / "train")), ImageFolder(str(Path(root) / "val"), transform=val_tf)


def build_data(cfg: DataConfig, model: torch.nn.Module, seed: int, world: int = 1, rank: int = 0) -> Data:
    """Datasets and sampler for `model` (its input size, mean and std)."""
    from timm.data import create_transform

    from .fashion import parse_source

    classes = check_image_folder(cfg.root)
    mc = model_data_config(model)
    common = dict(input_size=mc["input_size"], interpolation=mc["interpolation"], mean=mc["mean"], std=mc["std"])
    train_tf = create_transform(
        **common, is_training=True, scale=tuple(cfg.scale), hflip=cfg.hflip, color_jitter=cfg.color_jitter,
        auto_augment=cfg.auto_augment or None,
    )
    val_tf = create_transform(**common, is_training=False, crop_pct=mc["crop_pct"])
    train_base, val = _datasets(cfg.root, parse_source(cfg.root), val_tf)
    train = SeededDataset(train_base, train_tf, seed)
    sampler = ResumableSampler(train, world, rank, seed, cfg.batch_size)
    data = Data(classes=classes, train=train, val=val, sampler=sampler, cfg=cfg, world=world, rank=rank)
    if data.steps_per_epoch == 0:
        raise SpvitError(
            f"the training set has {len(train)} images: fewer than one batch of {cfg.batch_size} per process "
            f"on {world} process(es); lower --batch-size"
        )
    return data
