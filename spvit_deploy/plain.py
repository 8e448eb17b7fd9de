"""The plain network a spec describes: the timm model with standard layers swapped in.

Class-token ViT conv blocks: Conv2d (BatchNorm folded) C->d, ReLU, Linear d->C on the patch grid,
the class token passed through; skip blocks: no attention weights; FFNs: trimmed fc1/fc2.
Swin's plain blocks are in `families/swin.py`.
`build_plain(spec)` needs nothing but the spec; weights are loaded into it afterwards.
"""
from __future__ import annotations


import torch
from torch import nn

from .errors import SpvitError
from .plain_layers import BiasOnly, ConvAttention, InputBranch, SkipAttention  # noqa: F401  (re-exported)
from .spec import ArchSpec


def build_plain(spec: ArchSpec, device: str | torch.device | None = None) -> nn.Module:
    """An uninitialised-weights plain network for `spec` (load a state dict into it); the family of
    the model rebuilds its blocks."""
    import timm

    from .families import family_of
    from .models import resolve_model_name

    name = resolve_model_name(spec.model)
    model = timm.create_model(
        name, pretrained=False, num_classes=spec.num_classes, img_size=spec.img_size, device=device
    )
    fam = family_of(model, spec.model)
    fam.check_supported(model, spec.model)
    if spec.family != fam.name:
        raise SpvitError(f"spec says family '{spec.family}' but '{spec.model}' is a '{fam.name}' model; fix the spec")
    spec.validate_against(len(fam.block_paths(model)), [b.mlp.fc1.out_features for b in fam.blocks(model)])
    fam.build_plain(model, spec, device)
    model.spvit_spec = spec
    return model.eval()


def load_plain_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Strictly load `state` into a plain model, with a one-line error on mismatch."""
    from .models import check_state_keys

    own = model.state_dict()
    wrong = check_state_keys(own, state, f"{where} does not match its arch spec")
    if wrong:
        k = wrong[0]
        raise SpvitError(
            f"{where} does not match its arch spec: {k} is {tuple(state[k].shape)}, spec wants {tuple(own[k].shape)}"
        )
    model.load_state_dict(state, strict=True)
