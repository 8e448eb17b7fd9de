"""What to export or benchmark: a run folder's plain network, or a model name + spec with dense weights.

`load_export_model(run=...)` or `load_export_model(model=..., arch=..., checkpoint=...)` returns the
compressed network (`dense=True`: the dense model of the same name). Without a checkpoint the
weights are random, with biases and norm parameters drawn too so that no op folds away.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SpvitError
from ..spec import ArchSpec, BlockSpec


@dataclass(frozen=True)
class ExportModel:
    """A model ready to export, with the spec it computes (for the dense model: all MSA, full FFNs)."""

    module: nn.Module
    spec: ArchSpec
    variant: str  # "dense" or "compressed"
    random_weights: bool


def dense_spec(model: nn.Module, name: str) -> ArchSpec:
    """The spec a dense model computes: every block MSA with every FFN unit."""
    from ..models import resolve_model_name, vit_dims

    dims = vit_dims(model)
    img = int(model.patch_embed.img_size[0])
    blocks = tuple(BlockSpec(attn="msa", ffn_kept=tuple(range(w))) for w in dims.mlp_hidden)
    return ArchSpec(model=resolve_model_name(name), img_size=img, num_classes=dims.num_classes, blocks=blocks,
                    source="dense")


@torch.no_grad()
def randomize_constants(model: nn.Module, seed: int = 0) -> nn.Module:
    """Draw every 1-D parameter (biases, norm scales) around its init, in place.

    timm initialises biases to 0 and norm scales to 1; a graph simplifier would fold those ops
    away, which real weights never allow, so latency measured on them would be too optimistic.
    """
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.ndim == 1:
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.02)
    return model


def _resolve_spec(model: str | None, arch: str | ArchSpec | None, img_size: int | None,
                  num_classes: int | None) -> ArchSpec:
    from ..spec import resolve_spec

    if arch is None:
        raise SpvitError("give --arch SPEC (paper:<name>, a JSON file or a run folder) with --model, or use --run")
    return resolve_spec(arch, model, img_size=img_size, num_classes=num_classes)


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
) -> ExportModel:
    """The compressed network of a run or of `model` + `arch`; with `dense`, the dense network instead."""
    pair = load_model_pair(run=run, model=model, arch=arch, checkpoint=checkpoint, img_size=img_size,
                           num_classes=num_classes, seed=seed, want=("dense",) if dense else ("compressed",))
    return pair["dense" if dense else "compressed"]


def load_model_pair(
    *,
    run: str | os.PathLike[str] | None = None,
    model: str | None = None,
    arch: str | ArchSpec | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    want: tuple[str, ...] = ("dense", "compressed"),
) -> dict[str, ExportModel]:
    """Dense and/or compressed networks from one source (`run`, or `model` + `arch`).

    With `run`, the compressed network is the run's; the dense one has `checkpoint` weights or random ones.
    With `model` + `arch`, the compressed one is materialized from the dense one (same weights).
    """
    from ..materialization import materialize
    from ..models import create_dense
    from ..supernet import to_supernet

    unknown = sorted(set(want) - {"dense", "compressed"})
    if unknown:
        raise SpvitError(f"unknown model variant(s) {unknown}; use dense and/or compressed")
    if run is not None and (model is not None or arch is not None):
        raise SpvitError("give either --run RUN_DIR or --model/--arch, not both")
    if run is None and model is None:
        raise SpvitError("give --run RUN_DIR, or --model M with --arch SPEC")
    out: dict[str, ExportModel] = {}
    random = checkpoint is None
    if run is not None:
        from ..run import load_run

        if img_size is not None or num_classes is not None:
            raise SpvitError("--img-size/--num-classes do not apply to --run (the run's spec fixes them)")
        r = load_run(run)
        spec = r.spec
        if "compressed" in want:
            out["compressed"] = ExportModel(r.model.eval(), spec, "compressed", random_weights=False)
        if "dense" in want:
            torch.manual_seed(seed)
            d = create_dense(spec.model, checkpoint=checkpoint, num_classes=spec.num_classes, img_size=spec.img_size)
            if random:
                randomize_constants(d, seed)
            out["dense"] = ExportModel(d.eval(), dense_spec(d, spec.model), "dense", random_weights=random)
        return out
    assert model is not None
    if want == ("dense",) and arch is None:
        spec = None
    else:
        spec = _resolve_spec(model, arch, img_size, num_classes)
    torch.manual_seed(seed)
    d = create_dense(model, checkpoint=checkpoint,
                     num_classes=spec.num_classes if spec else num_classes,
                     img_size=spec.img_size if spec else img_size)
    if random:
        randomize_constants(d, seed)
    d = d.eval()
    if "compressed" in want:
        assert spec is not None
        plain = materialize(to_supernet(copy.deepcopy(d)).eval(), spec)
        out["compressed"] = ExportModel(plain, spec, "compressed", random_weights=random)
    if "dense" in want:
        out["dense"] = ExportModel(d, dense_spec(d, spec.model if spec else model), "dense", random_weights=random)
    return out
