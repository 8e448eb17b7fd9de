"""Training: gate search and fine-tuning with distillation, resumable and data-parallel. Python
equivalents of the CLI:

    cfg = config_for("deit_b", "data/", checkpoint="deit_b.pth", target_ratio=0.5, search_epochs=10)
    compress(cfg, "runs/deit_b")                 # spvit-deploy compress
    search(cfg, "runs/deit_b")                   # spvit-deploy search
    finetune(cfg, "runs/deit_b", arch=None)      # spvit-deploy finetune

`config_for` fills what is not given from the official recipe for the model's size (`recipe_for`).
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config", "DataConfig": "config", "SearchConfig": "config", "FinetuneConfig": "config",
    "make_config": "config", "config_for": "config", "recipe_for": "config",
    "compress": "pipeline", "search": "pipeline", "finetune": "pipeline", "resolve_target": "pipeline",
    "derive_for_target": "gate_search", "complexity_loss": "gate_search",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
