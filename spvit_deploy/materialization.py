"""Stage 3: supernet + spec -> plain network (BatchNorm folded, FFNs trimmed, nothing unused).

`materialize` reads only weights; gates, head-mixing logits and unused value/projection
weights do not survive. In eval mode the result equals the supernet pinned to the spec.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import SpvitError
from .families import family_of
from .plain import build_plain, load_plain_state
from .spec import ArchSpec
from .supernet.build import _require_supernet
from .supernet.layers import conv_state, fold_bn  # noqa: F401  (re-exported)


@torch.no_grad()
def plain_state_dict(supernet: nn.Module, spec: ArchSpec) -> dict[str, torch.Tensor]:
    """The plain network's weights for `spec`, computed from the supernet's (per block by its family)."""
    _require_supernet(supernet)
    fam = family_of(supernet)
    paths, blocks = fam.block_paths(supernet), fam.blocks(supernet)
    spec.validate_against(len(blocks), [b.mlp.dense_width for b in blocks])
    prefixes = tuple(f"{p}." for p in paths)
    state = {k: v for k, v in supernet.state_dict().items() if not k.startswith(prefixes)}
    for path, blk, b in zip(paths, blocks, spec.blocks):
        state.update(fam.plain_block_state(blk, b, spec.skip_branch, f"{path}."))
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def materialize(supernet: nn.Module, spec: ArchSpec) -> nn.Module:
    """Supernet + spec -> plain `nn.Module` of standard layers, in eval mode."""
    _require_supernet(supernet)
    fam = family_of(supernet)
    if spec.family != fam.name:
        raise SpvitError(f"spec is for the '{spec.family}' family but the supernet is a '{fam.name}' model; "
                         "pass the spec made for this model")
    img = fam.img_size(supernet)
    if spec.img_size != img or spec.num_classes != supernet.num_classes:
        raise SpvitError(
            f"spec is for img_size {spec.img_size} / {spec.num_classes} classes but the supernet has "
            f"{img} / {supernet.num_classes}; pass matching --img-size/--num-classes"
        )
    device = next(supernet.parameters()).device
    plain = build_plain(spec, device=device)
    load_plain_state(plain, plain_state_dict(supernet, spec), "materialized weights")
    return plain.eval()
