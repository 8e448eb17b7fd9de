"""Export to ONNX: dynamic batch, `onnx.checker`, onnxslim simplification and constant folding,
deploy metadata in `metadata_props`, and an ONNX Runtime vs PyTorch parity check before the
file is renamed into place (a failed check leaves nothing behind).

Graph: input `input` (B, 3, H, W) fp32, output `logits` (B, classes), B dynamic.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import SpvitError, require
from ..onnx_io import MAX_PROTO_BYTES, check_model, update_metadata
from ..spec import ArchSpec
from .ort import ort_session

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MIN_OPSET = 18  # LayerNormalization (17) and the dynamo exporter (18)
PARITY_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3)
META_VERSION = 1


@dataclass(frozen=True)
class ExportReport:
    """What `export_onnx` wrote and how it checked it."""

    path: str
    opset: int
    variant: str
    parity: dict[int, float]  # batch -> max abs diff of logits, ONNX Runtime vs PyTorch (fp32)
    tolerance: float
    op_counts: dict[str, int]
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        return max(self.parity.values(), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parity"] = {str(k): v for k, v in self.parity.items()}
        d["max_abs_diff"] = self.max_abs_diff
        return d


# ------------------------------------------------------------------------------ metadata


def export_metadata(model: nn.Module, spec: ArchSpec, variant: str, opset: int,
                    pad_widths: int | None) -> dict[str, Any]:
    """Deploy metadata: spec, input size, mean/std, class count, MACs."""
    from .. import __version__
    from ..macs import cost
    from ..models import data_config, dims_for

    cfg = data_config(model)
    dims = dims_for(spec.model, num_classes=spec.num_classes, img_size=spec.img_size)
    from ..artefacts import DeployMetadata, load

    meta = {
        "metadata_version": META_VERSION,
        "spvit_deploy": __version__,
        "variant": variant,
        "model": spec.model,
        "input_size": [dims.in_chans, spec.img_size, spec.img_size],
        "mean": cfg["mean"],
        "std": cfg["std"],
        "interpolation": cfg["interpolation"],
        "crop_pct": cfg["crop_pct"],
        "num_classes": spec.num_classes,
        "gmacs": round(cost(dims, spec).gmacs, 4),
        "opset": opset,
        "pad_widths": pad_widths,
        "spec": spec.to_dict(),
    }
    return load(DeployMetadata, meta, "the deploy metadata").to_dict()


# ------------------------------------------------------------------------------ export


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and warnings; keep stdout clean for --json."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _gelu_erf(x: Any, approximate: str = "none") -> Any:
    """aten.gelu as x * (1 + erf(x / sqrt 2)) * 0.5, the form ONNX Runtime and TensorRT fuse."""
    from onnxscript import opset18 as op

    if approximate != "none":
        inner = op.Mul(op.Add(x, op.Mul(op.Mul(op.Mul(x, x), x), 0.044715)), 0.7978845608028654)
        return op.Mul(op.Mul(x, op.Add(op.Tanh(inner), 1.0)), 0.5)
    return op.Mul(op.Mul(x, op.Add(op.Erf(op.Div(x, 1.4142135623730951)), 1.0)), 0.5)


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int) -> Any:
    """torch.onnx (dynamo) -> ModelProto with a dynamic batch axis."""
    require("onnxscript", "onnx")  # the dynamo exporter's translator
    batch = torch.export.Dim("batch", min=1, max=65536)
    with _quiet(), torch.no_grad():
        try:
            program = torch.onnx.export(
                model, (example,), dynamo=True, verbose=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), external_data=False, optimize=True,
                custom_translation_table={torch.ops.aten.gelu.default: _gelu_erf},
            )
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise SpvitError(f"torch.onnx could not export the model ({type(e).__name__}: {msg[:200]})") from None
    return program.model_proto


def prepare_for_export(model: nn.Module, pad_widths: int | None = None, rewrite: bool = True) -> nn.Module:
    """A CPU fp32 eval copy of `model` as it is exported: attention rewritten (see `rewrite.py`),
    FFN widths padded if asked."""
    from .pad import pad_ffn_widths
    from .rewrite import rewrite_for_export

    m = copy.deepcopy(model).float().cpu().eval()
    if rewrite:
        m = rewrite_for_export(m)
    if pad_widths:
        m = pad_ffn_widths(m, pad_widths, inplace=True)
    return m


def _cpu_eval(model: nn.Module) -> nn.Module:
    """`model` itself if it is already a CPU fp32 module in eval mode, else such a copy (the parity reference)."""
    p = next(model.parameters(), None)
    if not model.training and (p is None or (p.device.type == "cpu" and p.dtype == torch.float32)):
        return model
    return copy.deepcopy(model).float().cpu().eval()


def simplify(proto: Any) -> Any:
    """onnxslim: constant folding, dead-code and shape-op elimination, fusions."""
    onnxslim = require("onnxslim", "onnx")
    with _quiet():
        try:
            return onnxslim.slim(proto)
        except Exception as e:
            raise SpvitError(f"onnxslim failed to simplify the graph ({type(e).__name__}: {str(e)[:200]})") from None


def op_counts(proto: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def parity_inputs(img_size: int, batches: Sequence[int], seed: int = 0, in_chans: int = 3) -> dict[int, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return {b: torch.randn(b, in_chans, img_size, img_size, generator=g).numpy() for b in batches}


def check_parity(session: Any, model: nn.Module, inputs: dict[int, np.ndarray]) -> dict[int, float]:
    """Max abs diff of logits, ONNX Runtime vs PyTorch, per batch size."""
    out: dict[int, float] = {}
    with torch.no_grad():
        for b, x in inputs.items():
            ref = model(torch.from_numpy(x)).double().numpy()
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if got.shape != ref.shape:
                raise SpvitError(f"ONNX graph returns {got.shape} at batch {b}, PyTorch {ref.shape}")
            out[b] = float(np.abs(got.astype(np.float64) - ref).max())
    return out


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    spec: ArchSpec | None = None,
    variant: str | None = None,
    opset: int = DEFAULT_OPSET,
    pad_widths: int | None = None,
    check_batches: Sequence[int] = PARITY_BATCHES,
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 0,
    rewrite: bool = True,
) -> ExportReport:
    """Export `model` (a plain network, or a dense timm ViT) to `out`, checked and written atomically.

    `spec` defaults to the plain model's own spec (dense models: all MSA, full FFNs). The ONNX
    Runtime outputs at every batch in `check_batches` must be within `tolerance` of PyTorch's.
    `rewrite=False` exports timm's attention modules as they are (for comparisons).
    """
    onnx = require("onnx", "onnx")
    from .._io import atomic_path, check_writable
    from ..model_source import dense_spec

    if not isinstance(opset, int) or opset < MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise SpvitError(f"--opset must be between {MIN_OPSET} and {onnx.defs.onnx_opset_version()}, got {opset}")
    target = Path(out)
    if target.is_dir():
        raise SpvitError(f"--out '{target}' is a folder; give a file name such as model.onnx")
    check_writable(target, what="--out")  # before the export, not after it
    if spec is None:
        spec = getattr(model, "spvit_spec", None)
        if spec is None:
            name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
            if not name:
                raise SpvitError("cannot tell which model this is; pass spec=")
            spec = dense_spec(model, name)
    variant = variant or ("dense" if spec.source == "dense" else "compressed")
    m = prepare_for_export(model, pad_widths, rewrite)
    n_bytes = sum(p.numel() * p.element_size() for p in m.state_dict().values())
    if n_bytes > MAX_PROTO_BYTES:
        raise SpvitError(f"the model's weights ({n_bytes / 2**30:.1f} GiB) exceed ONNX's 2 GiB single-file limit")
    in_chans = int(m.patch_embed.proj.in_channels)
    # batch 2, not 1: torch.export specializes a size-1 dimension instead of keeping it symbolic
    example = torch.randn(2, in_chans, spec.img_size, spec.img_size, generator=torch.Generator().manual_seed(seed))
    proto = _torch_export(m, example, opset)
    proto = simplify(proto)
    check_model(proto, "the exported graph")
    meta = export_metadata(model, spec, variant, opset, pad_widths)
    update_metadata(proto, **meta)
    proto.producer_name = "spvit-deploy"
    with atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
        parity: dict[int, float] = {}
        if check_batches:
            session = ort_session(tmp, threads=None)
            parity = check_parity(session, _cpu_eval(model),
                                  parity_inputs(spec.img_size, check_batches, seed, in_chans))
            del session
            bad = {b: d for b, d in parity.items() if not d <= tolerance}
            if bad:
                b, d = next(iter(bad.items()))
                raise SpvitError(
                    f"ONNX Runtime differs from PyTorch by {d:.3g} at batch {b} (tolerance {tolerance:g}); "
                    f"nothing was written to {target}"
                )
    return ExportReport(
        path=str(target), opset=opset, variant=variant, parity=parity, tolerance=tolerance,
        op_counts=op_counts(proto), size_bytes=target.stat().st_size, metadata=meta,
    )
