"""One model source for every stage: a run folder, or a model name + spec (+ dense weights, image size,
classes), resolved into the spec and the networks (`ModelSource`). The CLI's model options parse into it.

Without a checkpoint the dense weights are random; `load()` then also draws biases and norm parameters
(`randomize_constants`) so that no op folds away in an exported graph.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from .errors import SpvitError
from .spec import ArchSpec, BlockSpec

VARIANTS = ("dense", "compressed")


@dataclass(frozen=True)
class SourcedModel:
    """A network with the spec it computes (for the dense model: all MSA, full FFNs)."""

    module: nn.Module
    spec: ArchSpec
    variant: str  # "dense" or "compressed"
    random_weights: bool


def dense_spec(model: nn.Module, name: str) -> ArchSpec:
    """The spec a dense model computes: every block MSA with every FFN unit."""
    from .families import family_of
    from .models import resolve_model_name

    fam = family_of(model, name)
    dims = fam.dims(model)
    blocks = tuple(BlockSpec(attn="msa", ffn_kept=tuple(range(w))) for w in dims.mlp_hidden)
    return ArchSpec(model=resolve_model_name(name), img_size=fam.img_size(model), num_classes=dims.num_classes,
                    blocks=blocks, source="dense", family=fam.name, conv_scope=fam.conv_scope)


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


@dataclass(frozen=True)
class ModelSource:
    """(run | model + arch) + checkpoint + img_size + num_classes: what a stage runs on."""

    run: str | os.PathLike[str] | None = None
    model: str | None = None
    arch: str | os.PathLike[str] | ArchSpec | None = None
    checkpoint: str | os.PathLike[str] | None = None
    img_size: int | None = None
    num_classes: int | None = None

    def kwargs(self, *names: str) -> dict[str, Any]:
        """The named fields as keyword arguments (all of them by default)."""
        return {n: getattr(self, n) for n in (names or tuple(f.name for f in fields(self)))}

    def _check(self) -> None:
        if self.run is not None and (self.model is not None or self.arch is not None):
            raise SpvitError("give either --run RUN_DIR or --model/--arch, not both")
        if self.run is None and self.model is None:
            raise SpvitError("give --run RUN_DIR, or --model M with --arch SPEC")
        if self.run is not None and (self.img_size is not None or self.num_classes is not None):
            raise SpvitError("--img-size/--num-classes do not apply to --run (the run's spec fixes them)")

    def spec(self) -> ArchSpec:
        """The spec: the run's, or `arch` with the size overrides, checked against `model`."""
        from .spec import load_spec, resolve_spec

        self._check()
        if self.run is not None:
            return load_spec(self.run)
        if self.arch is None:
            raise SpvitError("give --arch SPEC (paper:<name>, a JSON file or a run folder) with --model, or use --run")
        return resolve_spec(self.arch, self.model, img_size=self.img_size, num_classes=self.num_classes)

    def dense(self, spec: ArchSpec | None = None, seed: int | None = 0) -> nn.Module:
        """The dense network (eval mode not set): `checkpoint` weights, else random ones drawn after
        `torch.manual_seed(seed)` (None: from the current RNG state); sized by `spec` when given, else by
        the overrides."""
        from .models import create_dense

        name = self.model if self.model is not None else (spec.model if spec is not None else None)
        if name is None:
            raise SpvitError("give --model M (or a run folder whose spec names it)")
        if seed is not None:
            torch.manual_seed(seed)
        return create_dense(name, checkpoint=self.checkpoint,
                            num_classes=spec.num_classes if spec else self.num_classes,
                            img_size=spec.img_size if spec else self.img_size)

    def load(self, want: tuple[str, ...] = VARIANTS, seed: int = 0) -> dict[str, SourcedModel]:
        """Dense and/or compressed networks. With `run`, the compressed network is the run's and the dense
        one has `checkpoint` weights or random ones; with `model` + `arch`, the compressed one is
        materialized from the dense one (same weights)."""
        unknown = sorted(set(want) - set(VARIANTS))
        if unknown:
            raise SpvitError(f"unknown model variant(s) {unknown}; use dense and/or compressed")
        self._check()
        out: dict[str, SourcedModel] = {}
        random = self.checkpoint is None
        if self.run is not None:
            from .run import load_run

            r = load_run(self.run)
            if "compressed" in want:
                out["compressed"] = SourcedModel(r.model.eval(), r.spec, "compressed", random_weights=False)
            if "dense" in want:
                d = self.dense(r.spec, seed)
                if random:
                    randomize_constants(d, seed)
                out["dense"] = SourcedModel(d.eval(), dense_spec(d, r.spec.model), "dense", random_weights=random)
            return out
        spec = None if want == ("dense",) and self.arch is None else self.spec()
        d = self.dense(spec, seed)
        if random:
            randomize_constants(d, seed)
        d = d.eval()
        if "compressed" in want:
            from .materialization import materialize
            from .supernet import to_supernet

            assert spec is not None
            plain = materialize(to_supernet(copy.deepcopy(d)).eval(), spec)
            out["compressed"] = SourcedModel(plain, spec, "compressed", random_weights=random)
        if "dense" in want:
            assert self.model is not None
            out["dense"] = SourcedModel(d, dense_spec(d, spec.model if spec else self.model), "dense",
                                        random_weights=random)
        return out
