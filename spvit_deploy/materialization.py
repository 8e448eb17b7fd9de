"""Stage 3: supernet + spec -> plain network (BatchNorm folded, FFNs trimmed, nothing unused).

`materialize` reads only weights; gates, head-mixing logits and unused value/projection
weights do not survive. In eval mode the result equals the supernet pinned to the spec.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import SpvitError
from .plain import build_plain, load_plain_state
from .spec import CONV_KERNEL, ArchSpec
from .supernet.build import _require_supernet
from .supernet.layers import SinglePathAttention


def fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv (weight (d, C, k, k), bias (d,)) followed by eval-mode BatchNorm -> one conv."""
    w64, b64 = weight.double(), bias.double()
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = w64 * scale[:, None, None, None]
    b = (b64 - bn.running_mean.double()) * scale + bn.bias.double()
    return w.to(weight.dtype), b.to(bias.dtype)


def conv_state(attn: SinglePathAttention, op: str, prefix: str) -> dict[str, torch.Tensor]:
    w, b, proj = attn.conv_weights(op)
    w, b = fold_bn(w, b, attn.bn(op))
    return {
        f"{prefix}conv.weight": w,
        f"{prefix}conv.bias": b,
        f"{prefix}proj.weight": proj,
        f"{prefix}proj.bias": attn.msa.proj.bias,
    }


@torch.no_grad()
def plain_state_dict(supernet: nn.Module, spec: ArchSpec) -> dict[str, torch.Tensor]:
    """The plain network's weights for `spec`, computed from the supernet's."""
    _require_supernet(supernet)
    spec.validate_against(len(supernet.blocks), [b.mlp.dense_width for b in supernet.blocks])
    src = supernet.state_dict()
    block_parts = tuple(f"blocks.{i}.{part}." for i in range(len(supernet.blocks)) for part in ("attn", "mlp"))
    state = {k: v for k, v in src.items() if not k.startswith(block_parts)}
    for i, (blk, b) in enumerate(zip(supernet.blocks, spec.blocks)):
        pre = f"blocks.{i}."
        if b.attn == "msa":
            msa = blk.attn.msa.state_dict()
            state.update({f"{pre}attn.{k}": v for k, v in msa.items()})
        elif b.attn in CONV_KERNEL:
            state.update(conv_state(blk.attn, b.attn, f"{pre}attn."))
        kept = torch.tensor(b.ffn_kept, dtype=torch.long)
        fc1, fc2 = blk.mlp.fc1, blk.mlp.fc2
        if b.ffn_width == 0:
            state[f"{pre}mlp.bias"] = fc2.bias
        else:
            state[f"{pre}mlp.fc1.weight"] = fc1.weight[kept]
            state[f"{pre}mlp.fc1.bias"] = fc1.bias[kept]
            state[f"{pre}mlp.fc2.weight"] = fc2.weight[:, kept]
            state[f"{pre}mlp.fc2.bias"] = fc2.bias
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def materialize(supernet: nn.Module, spec: ArchSpec) -> nn.Module:
    """Supernet + spec -> plain `nn.Module` of standard layers, in eval mode."""
    _require_supernet(supernet)
    img = int(supernet.patch_embed.img_size[0])
    if spec.img_size != img or spec.num_classes != supernet.num_classes:
        raise SpvitError(
            f"spec is for img_size {spec.img_size} / {spec.num_classes} classes but the supernet has "
            f"{img} / {supernet.num_classes}; pass matching --img-size/--num-classes"
        )
    device = next(supernet.parameters()).device
    plain = build_plain(spec, device=device)
    load_plain_state(plain, plain_state_dict(supernet, spec), "materialized weights")
    return plain.eval()
