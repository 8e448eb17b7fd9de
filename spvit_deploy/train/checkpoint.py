"""Training checkpoints: everything an exact resume needs, written atomically by one process.

A checkpoint holds the model, optimizers, grad scaler, every rank's RNG states (torch, CUDA,
numpy, python), the position (epoch, batches consumed, global step) and how many lines of
`metrics.jsonl` belong to it. It is written to a temporary file and renamed, so a crash or
kill -9 leaves either the previous checkpoint or the new one, never a torn file.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path
from ..errors import SpvitError

CHECKPOINT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain lists (loadable with `weights_only=True`)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(py_state), py_gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))


@dataclass
class Position:
    """Where a stage is: `epoch` (0-based) with `batch` batches of it consumed, `step` optimizer steps
    in total; `done` once the last epoch was evaluated."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike[str], *, stage: str, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
    scaler: Any, position: Position, rng: list[dict[str, Any]], metrics_lines: int,
) -> None:
    """Write one checkpoint atomically (call on one rank; `rng` holds every rank's states)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "stage": stage,
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict(),
        "position": {"epoch": position.epoch, "batch": position.batch, "step": position.step,
                     "done": position.done, "extra": position.extra},
        "rng": rng,
        "world": len(rng),
        "metrics_lines": metrics_lines,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())


def read_checkpoint(path: str | os.PathLike[str], stage: str) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` for `stage`."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SpvitError(f"cannot read checkpoint '{p}' ({type(e).__name__}); it is damaged, start a new run") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION or state.get("stage") != stage:
        raise SpvitError(f"'{p}' is not a {stage} checkpoint of this spvit-deploy version; start a new run")
    return state


def load_into(
    state: dict[str, Any], model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer], scaler: Any,
) -> Position:
    """Restore model, optimizers and scaler from `state`; the position to continue from."""
    for name, buf in state["model"].items():  # pinned-gate buffers change shape when pinned
        if name.endswith(".gates.fixed"):
            model.get_submodule(name.rsplit(".", 1)[0]).fixed = buf.clone()
    model.load_state_dict(state["model"], strict=True)
    for k, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][k])
    scaler.load_state_dict(state["scaler"])
    p = state["position"]
    return Position(epoch=p["epoch"], batch=p["batch"], step=p["step"], done=p["done"], extra=p["extra"])
