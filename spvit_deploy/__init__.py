"""spvit-deploy: SPViT compression of timm ViTs, from supernet to deployable plain networks.

Stages (each a verb over an artefact): `create_dense` -> `to_supernet` -> search/fine-tune ->
`derive_spec` -> `materialize` -> `save_run` -> export -> build engine -> benchmark; `run_demo`
runs them all on real digits.
Heavy or optional libraries are imported lazily; `import spvit_deploy` is cheap.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "SpvitError": "errors",
    "ArchSpec": "spec",
    "BlockSpec": "spec",
    "load_spec": "spec",
    "load_paper_arch": "spec",
    "create_dense": "models",
    "load_checkpoint": "models",
    "vit_dims": "models",
    "to_supernet": "supernet",
    "fix_gates": "supernet",
    "derive_spec": "supernet",
    "supernet_macs": "supernet",
    "materialize": "materialization",
    "build_plain": "plain",
    "save_run": "run",
    "load_run": "run",
    "cost": "macs",
    "arch_stats": "macs",
    "verify": "verification",
    "run_demo": "demo",
}

__all__ = ["__version__", *_EXPORTS]
lazy_exports(__name__, _EXPORTS)
