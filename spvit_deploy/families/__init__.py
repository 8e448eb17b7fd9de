"""Model families: what differs between class-token ViTs and Swin, behind one interface (`base.py`).

`family_of(model)` finds the family of a timm model, `family_named(name)` of a spec's `family` field.
A third family is one module with a `ModelFamily` subclass, added to `FAMILIES`.
"""
from __future__ import annotations

from torch import nn

from ..errors import SpvitError
from .base import BlockGeom, ModelDims, ModelFamily

__all__ = ["BlockGeom", "ModelDims", "ModelFamily", "FAMILIES", "family_of", "family_named"]


def _families() -> dict[str, ModelFamily]:
    from .swin import SwinFamily
    from .vit import ViTFamily

    return {f.name: f for f in (ViTFamily(), SwinFamily())}


FAMILIES: dict[str, ModelFamily] = {}


def _registry() -> dict[str, ModelFamily]:
    if not FAMILIES:
        FAMILIES.update(_families())
    return FAMILIES


def family_named(name: str) -> ModelFamily:
    fams = _registry()
    if name not in fams:
        raise SpvitError(f"unknown model family '{name}'; known: {', '.join(fams)}")
    return fams[name]


def family_of(model: nn.Module, name: str | None = None) -> ModelFamily:
    """The family that accepts `model` (a dense timm model, a supernet or a plain network)."""
    for fam in _registry().values():
        if fam.accepts(model):
            return fam
    raise SpvitError(
        f"model '{name or type(model).__name__}' is not supported: it is a {type(model).__name__}; "
        "use a timm VisionTransformer with a class token (deit_t|deit_s|deit_b) or a timm SwinTransformer "
        "(swin_t|swin_s|swin_b)"
    )
