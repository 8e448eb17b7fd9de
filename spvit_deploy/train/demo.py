"""The offline demo on real data: scikit-learn's handwritten digits (1,797 8x8 images, 10
classes) upsampled to 32x32, a ViT-Nano teacher trained from scratch, then SPViT compression
to about half its MACs, fine-tuning with distillation and materialization; `DIR/report.json`.

Every step is resumable and idempotent: a re-run skips what is done and continues what was
interrupted.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import write_json, write_text
from ..errors import SpvitError, require
from .config import DataConfig, TrainConfig

MODEL = "vit_nano_patch4_32"
IMG = 32


@dataclass(frozen=True)
class DemoPlan:
    """The demo's budget: teacher, search and fine-tune epochs, target, batch."""

    teacher_epochs: int = 40
    teacher_lr: float = 1e-3
    search_epochs: int = 4
    finetune_epochs: int = 20
    target_ratio: float = 0.5
    batch_size: int = 32
    val_fraction: float = 0.2
    per_class: int = 0  # 0: every digit; >0: at most this many per class (quick runs)


QUICK = DemoPlan(teacher_epochs=3, search_epochs=1, finetune_epochs=1, per_class=24, batch_size=16)


def prepare_digits(root: Path, seed: int = 0, val_fraction: float = 0.2, per_class: int = 0) -> dict[str, Any]:
    """Write the digits as an ImageFolder (`train/`, `val/`, 32x32 grayscale PNGs) with a seeded,
    stratified split; idempotent (`split.json` records what was written)."""
    sklearn = require("sklearn.datasets", "data", "scikit-learn")
    image = require("PIL.Image", "data", "pillow")
    marker = root / "split.json"
    want = {"dataset": "sklearn.datasets.load_digits", "seed": seed, "val_fraction": val_fraction,
            "per_class": per_class, "size": IMG}
    if marker.exists():
        done = json.loads(marker.read_text())
        if all(done.get(k) == v for k, v in want.items()):
            return done
        raise SpvitError(f"'{root}' holds another split of the digits ({marker}); use a new --out")
    digits = sklearn.load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    sha = hashlib.sha256()
    for cls in range(10):
        idx = np.flatnonzero(digits.target == cls)
        idx = rng.permutation(idx)
        if per_class:
            idx = idx[:per_class]
        n_val = max(1, int(round(len(idx) * val_fraction)))
        for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = root / split / str(cls)
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(part.tolist()):
                pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
                img = image.fromarray(pixels, mode="L").resize((IMG, IMG), image.BICUBIC)
                img.save(folder / f"{i:04d}.png")
                sha.update(f"{split}/{cls}/{i}".encode())
                counts[split] += 1
    info = {**want, **counts, "split_sha256": sha.hexdigest()}
    write_json(marker, info)
    return info


def demo_config(data_root: Path, plan: DemoPlan, teacher_weights: Path, seed: int) -> TrainConfig:
    """The compress config of the demo: ViT-Nano from the teacher's weights, target half the MACs."""
    from .config import config_for

    data = DataConfig(root=str(data_root), batch_size=plan.batch_size, scale=(0.6, 1.0), hflip=0.0,
                      color_jitter=0.0, smoothing=0.1)
    return config_for(
        MODEL, data, checkpoint=str(teacher_weights), target_ratio=plan.target_ratio, seed=seed, amp="none",
        distill="soft", distill_alpha=0.7, distill_tau=2.0, clip_grad=1.0, checkpoint_every=50,
        search_epochs=plan.search_epochs, search_lr=5e-4, search_gate_lr=5e-2, search_schedule="constant",
        finetune_epochs=plan.finetune_epochs, finetune_lr=5e-4, finetune_min_lr=1e-5, finetune_warmup_epochs=0.0,
    )
