"""Training: gate search and fine-tuning with distillation, resumable and data-parallel, and the
offline demo. Python equivalents of the CLI:

    cfg = make_config(model, DataConfig(root), dims, dense_gmacs, target_ratio=0.5, ...)  # or config_for(...)
    compress(cfg, out)        # spvit-deploy compress
    search(cfg, out)          # spvit-deploy search
    finetune(cfg, out, arch=) # spvit-deploy finetune
    run_demo(out)             # spvit-deploy demo
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config", "DataConfig": "config", "SearchConfig": "config", "FinetuneConfig": "config",
    "make_config": "config", "config_for": "config", "recipe_for": "config",
    "compress": "pipeline", "search": "pipeline", "finetune": "pipeline", "resolve_target": "pipeline",
    "derive_for_target": "search", "complexity_loss": "search",
    "run_demo": "demo",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'spvit_deploy.train' has no attribute '{name}'")
