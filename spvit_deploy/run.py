"""Run folders: `arch.json` + `model.safetensors` + `meta.json`, the artefact every later stage reads.

`load_run(dir)` rebuilds the plain network from the spec alone (no supernet).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from ._io import atomic_path, write_json
from .errors import SpvitError
from .spec import ArchSpec, load_spec

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
META_VERSION = 1


@dataclass(frozen=True)
class Run:
    """A loaded run folder."""

    path: Path
    model: nn.Module
    spec: ArchSpec
    meta: dict[str, Any]


def run_meta(model: nn.Module, spec: ArchSpec, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Deploy metadata (a `RunMeta`, as written): input size, mean/std, class count, MACs and params."""
    from .artefacts import RunMeta, load

    from .macs import cost
    from .models import data_config, dims_for

    cfg = data_config(model)
    dims = dims_for(spec.model, num_classes=spec.num_classes, img_size=spec.img_size)
    cfg["input_size"] = [dims.in_chans, spec.img_size, spec.img_size]
    c = cost(dims, spec)
    meta = RunMeta(meta_version=META_VERSION, spvit_deploy=__version__, model=spec.model, num_classes=spec.num_classes,
                   data_config=cfg, gmacs=round(c.gmacs, 4), params=c.params, source=source)
    return load(RunMeta, meta.to_dict(), "run meta").to_dict()  # what is written passes the reader's checks


def save_run(model: nn.Module, spec: ArchSpec, out: str | os.PathLike[str],
             source: dict[str, Any] | None = None) -> Path:
    """Write a plain model and its spec as a run folder (each file written atomically); `source` records
    where the weights came from."""
    from safetensors.torch import save_file

    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpvitError(f"--out '{out_dir}' exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "spvit_deploy": __version__})
    spec.save(out_dir / ARCH_FILE)
    write_json(out_dir / META_FILE, run_meta(model, spec, source))
    return out_dir


def load_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Run:
    """Rebuild the plain network of a run folder from its spec and weights."""
    from safetensors.torch import load_file

    from .plain import build_plain, load_plain_state

    p = Path(path)
    if not p.is_dir():
        raise SpvitError(f"run folder '{p}' does not exist; create one with 'spvit-deploy materialize' or 'compress'")
    for f in (ARCH_FILE, WEIGHTS_FILE):
        if not (p / f).is_file():
            raise SpvitError(f"run folder '{p}' has no {f}; it is incomplete, re-run the stage that writes it")
    spec = load_spec(p / ARCH_FILE)
    try:
        state = load_file(str(p / WEIGHTS_FILE), device=str(device))
    except Exception as e:
        raise SpvitError(f"cannot read {p / WEIGHTS_FILE} ({type(e).__name__}); the file is damaged") from None
    model = build_plain(spec, device=device)
    load_plain_state(model, state, str(p / WEIGHTS_FILE))
    meta: dict[str, Any] = {}
    if (p / META_FILE).is_file():
        from .artefacts import RunMeta, load

        try:
            meta = json.loads((p / META_FILE).read_text())
        except json.JSONDecodeError:
            raise SpvitError(f"{p / META_FILE} is not valid JSON; the run folder is damaged") from None
        meta = load(RunMeta, meta, str(p / META_FILE)).to_dict()
    return Run(path=p, model=model.eval(), spec=spec, meta=meta)
