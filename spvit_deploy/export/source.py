"""What to export or benchmark: a run folder's plain network, or a model name + spec with dense weights,
through the one model source (`spvit_deploy.model_source.ModelSource`).

`load_export_model(run=...)` or `load_export_model(model=..., arch=..., checkpoint=...)` returns the
compressed network (`dense=True`: the dense model of the same name); `load_model_pair` both.
"""
from __future__ import annotations

import os

from ..model_source import VARIANTS, ModelSource, SourcedModel
from ..spec import ArchSpec


def load_export_model(
    *,
    run: str | os.PathLike[str] | None = None,
    model: str | None = None,
    arch: str | ArchSpec | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dense: bool = False,
    img_size: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> SourcedModel:
    """The compressed network of a run or of `model` + `arch`; with `dense`, the dense network instead."""
    variant = "dense" if dense else "compressed"
    src = ModelSource(run=run, model=model, arch=arch, checkpoint=checkpoint, img_size=img_size,
                      num_classes=num_classes)
    return src.load((variant,), seed)[variant]


def load_model_pair(
    *,
    run: str | os.PathLike[str] | None = None,
    model: str | None = None,
    arch: str | ArchSpec | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    want: tuple[str, ...] = VARIANTS,
) -> dict[str, SourcedModel]:
    """Dense and/or compressed networks from one source (`ModelSource.load`)."""
    src = ModelSource(run=run, model=model, arch=arch, checkpoint=checkpoint, img_size=img_size,
                      num_classes=num_classes)
    return src.load(want, seed)
