"""End-to-end exactness checks: dense == supernet (all gates on) == materialized (gates pinned).

With random weights every degenerate parameter is redrawn first (`randomize_degenerate`), as the
supernet's BatchNorm statistics and head-mixing logits are, so that no branch hides below the tolerance.

Later stages (onnx, fused kernels, plugin and fp16 graphs, TensorRT) register themselves in
`STAGES`; each takes the `VerifyContext` and returns a `Check`.
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .errors import SpvitError

TOLERANCE = 1e-5


@dataclass(frozen=True)
class Check:
    stage: str
    max_abs_diff: float
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyContext:
    """What the stages compare: the plain model, its reference outputs and the inputs."""

    model_name: str
    spec: Any
    plain: nn.Module
    inputs: torch.Tensor
    reference: torch.Tensor  # the plain network's logits on `inputs`, fp32
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


StageFn = Callable[[VerifyContext], Check]
STAGES: dict[str, StageFn] = {}
# stage name -> module that registers it (imported only when the stage is asked for)
STAGE_MODULES: dict[str, str] = {
    "fused": ".fused",
    "onnx-plugin": ".engine.stages",
    "onnx-fp16": ".engine.stages",
    "tensorrt": ".engine.stages",
    "onnx": ".export.stage",
}


def register_stage(name: str) -> Callable[[StageFn], StageFn]:
    def deco(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return deco


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def randomize_degenerate(model: nn.Module, generator: torch.Generator) -> list[str]:
    """Redraw, in place, the parameters a fresh init leaves degenerate; return their names.

    Degenerate: every value equal (zero biases, unit norm scales, DeiT-III's LayerScale gammas of 1e-6) or
    all below 1e-4 in magnitude (the class token). A branch scaled by 1e-6, or a bias that is zero, hides
    its mistakes below any tolerance. Scales (LayerScale gammas, norm weights) are drawn in [0.5, 1.5),
    the rest with std 0.02 around their value.
    """
    names = []
    for name, p in model.named_parameters():
        flat = p.detach().flatten()
        if flat.numel() > 1 and not bool((flat == flat[0]).all()) and float(flat.abs().max()) >= 1e-4:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "gamma" or (p.ndim == 1 and leaf == "weight"):
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) + 0.5)
        else:
            p.add_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.02)
        names.append(name)
    return names


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Final features (B, T, C) and logits, flattened into one vector for comparison."""
    feats = model.forward_features(x)
    logits = model.forward_head(feats)
    return torch.cat([feats.flatten(1), logits.flatten(1)], dim=1)


@torch.no_grad()
def verify(
    model: str,
    arch: Any,
    checkpoint: str | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    stages: tuple[str, ...] = (),
    batch: int = 2,
    seed: int = 0,
    tolerance: float = TOLERANCE,
    options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Build dense -> supernet -> materialized and compare each with the previous, in fp32."""
    from .materialization import materialize
    from .model_source import ModelSource
    from .supernet import fix_gates, randomize_supernet_state, set_all_gates, to_supernet

    for s in stages:
        if s in STAGE_MODULES and s not in STAGES:
            importlib.import_module(STAGE_MODULES[s], __package__)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SpvitError(f"unknown verify stage(s) {unknown}; available: {sorted(set(STAGES) | set(STAGE_MODULES))}")
    source = ModelSource(model=model, arch=arch, checkpoint=checkpoint, img_size=img_size, num_classes=num_classes)
    spec = source.spec()
    dense = source.dense(spec, seed)
    if checkpoint is None:  # random weights: nothing may be scaled away or zero
        randomize_degenerate(dense, torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, spec.img_size, spec.img_size, generator=g)
    checks = []

    dense_out = _outputs(dense, x)
    supernet = to_supernet(copy.deepcopy(dense)).eval()
    set_all_gates(supernet, True)
    d = max_abs_diff(_outputs(supernet, x), dense_out)
    checks.append(Check("supernet", d, d <= tolerance, {"vs": "dense"}))

    randomize_supernet_state(supernet, g)
    fix_gates(supernet, spec)
    pinned_out = _outputs(supernet, x)
    plain = materialize(supernet, spec)
    plain_out = _outputs(plain, x)
    d = max_abs_diff(plain_out, pinned_out)
    checks.append(Check("materialize", d, d <= tolerance, {"vs": "supernet with gates pinned to the spec"}))

    ctx = VerifyContext(
        model_name=model,
        spec=spec,
        plain=plain,
        inputs=x,
        reference=plain(x),
        options=dict(options or {}),
    )
    for s in stages:
        checks.append(STAGES[s](ctx))
    return VerifyReport(ok=all(c.ok for c in checks), checks=tuple(checks))
