"""Dense ViTs as users name them: aliases, timm creation, checkpoint loading, shape facts.

Stage 0 of the pipeline: `create_dense(name, ...)` returns a timm model of a supported family
(`families/`: a class-token VisionTransformer or a SwinTransformer), its weights from the hub
(`pretrained=True`) or a local checkpoint.
"""
from __future__ import annotations

import os

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from .errors import SpvitError
from .families.vit import ViTDims, check_vit_supported, vit_dims  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from .families import ModelDims

ALIASES: dict[str, str] = {
    "deit_t": "deit_tiny_patch16_224",
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_s": "deit_small_patch16_224",
    "deit_small": "deit_small_patch16_224",
    "deit_b": "deit_base_patch16_224",
    "deit_base": "deit_base_patch16_224",
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_s": "swin_small_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
    "swin_base": "swin_base_patch4_window7_224",
}


def resolve_model_name(name: str) -> str:
    """Map a user's model name (`deit_b`, `vit_small_patch16_224`, ...) to a timm name."""
    import timm

    from . import zoo  # noqa: F401  (registers the small demo ViTs, e.g. vit_nano_patch4_32)

    timm_name = ALIASES.get(name, name)
    base = timm_name.split(".")[0]
    if not timm.is_model(base):
        raise SpvitError(
            f"unknown model '{name}'; use deit_t|deit_s|deit_b, swin_t|swin_s|swin_b or a timm "
            f"VisionTransformer / SwinTransformer name such as vit_small_patch16_224"
        )
    return timm_name


def same_model(a: str, b: str) -> bool:
    """Whether two user/timm names denote the same architecture (pretrained tags ignored)."""
    return resolve_model_name(a).split(".")[0] == resolve_model_name(b).split(".")[0]


def check_supported(model: nn.Module, name: str) -> None:
    """Raise a one-line error unless `model` belongs to a supported family with the blocks it wraps."""
    from .families import family_of

    family_of(model, name).check_supported(model, name)


def _timm_kwargs(num_classes: int | None, img_size: int | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if img_size is not None:
        kw["img_size"] = img_size
    return kw


def create_dense(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    img_size: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Create the dense ViT `name`, random, from the hub, or from a local checkpoint."""
    import timm

    timm_name = resolve_model_name(name)
    kw = _timm_kwargs(num_classes, img_size)
    if pretrained and checkpoint is not None:
        raise SpvitError("give either --pretrained or --checkpoint, not both")
    if pretrained:
        try:
            model = timm.create_model(timm_name, pretrained=True, **kw)
        except Exception as e:  # hub errors come in many types; all mean "could not fetch"
            raise SpvitError(
                f"could not load pretrained weights for '{timm_name}' from the hub "
                f"({type(e).__name__}); offline? pass --checkpoint PATH to a local weights file"
            ) from None
    else:
        model = timm.create_model(timm_name, pretrained=False, device=device, **kw)
    check_supported(model, name)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors`, `.bin` or `.pth` (bare, `{'model': ...}`, `{'state_dict': ...}`)."""
    p = Path(path)
    if not p.is_file():
        raise SpvitError(f"checkpoint '{p}' does not exist; check the path")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            import argparse

            with torch.serialization.safe_globals([argparse.Namespace]):  # training checkpoints keep their args
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise SpvitError(
            f"cannot read checkpoint '{p}' ({type(e).__name__}); "
            "expected a .pth/.bin torch file or a .safetensors file"
        ) from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpvitError(f"checkpoint '{p}' holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def check_state_keys(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str) -> list[str]:
    """Strict loading's key check: a one-line `SpvitError` ("`what`: missing ... keys; unexpected ...") unless
    `state` has exactly the keys of `own`; returns the keys whose shapes differ (in `own`'s order)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise SpvitError(f"{what}: {describe_key_mismatch(missing, unexpected)}")
    return [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]


def describe_key_mismatch(missing: list[str], unexpected: list[str], limit: int = 3) -> str:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:limit])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:limit])})")
    return "; ".join(parts)


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a dense checkpoint (the family's official format or timm's) into `model`, strictly."""
    from .families import family_of

    state = read_state_dict(path)
    try:
        state = family_of(model).checkpoint_filter(state, model)
    except Exception as e:
        raise SpvitError(f"checkpoint '{path}' does not fit this model ({type(e).__name__}: {e})") from None
    own = model.state_dict()
    wrong = check_state_keys(own, state, f"checkpoint '{path}' does not fit this model")
    if wrong:
        k = wrong[0]
        raise SpvitError(
            f"checkpoint '{path}' does not fit this model: {len(wrong)} tensors have other shapes "
            f"(first: {k} is {tuple(state[k].shape)}, model wants {tuple(own[k].shape)}); "
            "check --model, --num-classes and --img-size"
        )
    model.load_state_dict(state, strict=True)


def data_config(model: nn.Module) -> dict[str, Any]:
    """Input size, mean and std that the model was trained with (timm's pretrained config)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    return {
        "input_size": list(cfg["input_size"]),
        "mean": [float(m) for m in cfg["mean"]],
        "std": [float(s) for s in cfg["std"]],
        "interpolation": cfg.get("interpolation", "bicubic"),
        "crop_pct": float(cfg.get("crop_pct", 0.875)),
    }


def dims_for(name: str, num_classes: int | None = None, img_size: int | None = None) -> "ModelDims":
    """Block geometry and fixed costs of a named model without allocating its weights (meta device)."""
    import timm

    timm_name = resolve_model_name(name)
    model = timm.create_model(timm_name, pretrained=False, device="meta", **_timm_kwargs(num_classes, img_size))
    check_supported(model, name)
    return model_dims(model)


def model_dims(model: nn.Module) -> "ModelDims":
    """Block geometry and fixed costs of a dense model or a supernet of any supported family."""
    from .families import family_of

    return family_of(model).dims(model)
