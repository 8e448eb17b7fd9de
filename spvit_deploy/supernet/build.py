"""Stage 1: dense ViT -> single-path supernet; pin gates to a spec; derive a spec from gates.

The supernet is the dense timm model with each block's `attn` and `mlp` wrapped in place,
so the dense weights keep their names under `blocks.i.attn.msa.*` and `blocks.i.mlp.*`.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import macs as M
from ..errors import SpvitError
from ..models import ViTDims, check_supported, vit_dims
from ..spec import OP_CODES, ArchSpec, BlockSpec
from .layers import GatedMlp, SinglePathAttention

ALPHA = 0.01
GATE_INIT = 1.5


def to_supernet(model: nn.Module, alpha: float = ALPHA, gate_init: float = GATE_INIT) -> nn.Module:
    """Wrap a dense class-token ViT's blocks in place; with all gates on it computes the dense model."""
    if is_supernet(model):
        return model
    check_supported(model, type(model).__name__)
    grid = tuple(model.patch_embed.grid_size)
    for blk in model.blocks:
        blk.attn = SinglePathAttention(blk.attn, grid, alpha=alpha, gate_init=gate_init)
        blk.mlp = GatedMlp(blk.mlp, gate_init=gate_init)
    return model


def is_supernet(model: nn.Module) -> bool:
    return len(getattr(model, "blocks", [])) > 0 and isinstance(model.blocks[0].attn, SinglePathAttention)


def _require_supernet(model: nn.Module) -> None:
    if not is_supernet(model):
        raise SpvitError("expected a supernet (see spvit_deploy.to_supernet)")


def fix_gates(supernet: nn.Module, spec: ArchSpec | None) -> nn.Module:
    """Pin every gate to `spec` (ops and kept FFN units); `None` unpins them."""
    _require_supernet(supernet)
    if spec is not None:
        spec.validate_against(len(supernet.blocks), [b.mlp.dense_width for b in supernet.blocks])
    for i, blk in enumerate(supernet.blocks):
        if spec is None:
            blk.attn.gates.fix(None)
            blk.mlp.gates.fix(None)
            continue
        b = spec.blocks[i]
        blk.attn.gates.fix([float(c) for c in OP_CODES[b.attn]])
        mask = torch.zeros(blk.mlp.dense_width)
        mask[list(b.ffn_kept)] = 1.0
        blk.mlp.gates.fix(mask)
    return supernet


def set_all_gates(supernet: nn.Module, on: bool = True) -> nn.Module:
    """Pin every gate on (the dense model) or off."""
    _require_supernet(supernet)
    for blk in supernet.blocks:
        blk.attn.gates.fix(torch.full((3,), float(on)))
        blk.mlp.gates.fix(torch.full((blk.mlp.dense_width,), float(on)))
    return supernet


def block_op(attn: SinglePathAttention) -> str:
    code = tuple(int(v) for v in torch.cumprod(attn.gates.kept().long(), 0).tolist())
    return next(op for op, c in OP_CODES.items() if c == code)


def derive_spec(supernet: nn.Module, model_name: str, source: str = "search") -> ArchSpec:
    """The architecture the gates choose now (p > 0.5, or their pinned values)."""
    _require_supernet(supernet)
    dims = vit_dims(supernet)
    blocks = []
    for blk in supernet.blocks:
        kept = torch.nonzero(blk.mlp.gates.kept()).flatten().tolist()
        blocks.append(BlockSpec(attn=block_op(blk.attn), ffn_kept=tuple(int(k) for k in kept)))
    img = int(supernet.patch_embed.img_size[0])
    return ArchSpec(model=model_name, img_size=img, num_classes=dims.num_classes, blocks=tuple(blocks), source=source)


def supernet_macs(supernet: nn.Module, dims: ViTDims | None = None) -> torch.Tensor:
    """Differentiable MACs of the architecture the gates choose (hard value, sigmoid gradient)."""
    _require_supernet(supernet)
    dims = dims or vit_dims(supernet)
    total = torch.tensor(float(M.fixed_macs(dims)), device=supernet.blocks[0].mlp.gates.logits.device)
    costs = {op: float(M.attn_macs(op, dims)) for op in ("msa", "conv3x3", "conv1x1")}
    for blk in supernet.blocks:
        g = torch.cumprod(blk.attn.gates.indicator(), 0)
        total = total + g[2] * costs["msa"] + g[1] * (1 - g[2]) * costs["conv3x3"]
        total = total + g[0] * (1 - g[1]) * (1 - g[2]) * costs["conv1x1"]
        total = total + M.ffn_macs(blk.mlp.gates.indicator().sum(), dims)
    return total


def randomize_supernet_state(supernet: nn.Module, generator: torch.Generator) -> None:
    """Give head-mixing logits and BatchNorms non-trivial values (for exactness checks)."""
    _require_supernet(supernet)
    with torch.no_grad():
        for blk in supernet.blocks:
            a = blk.attn
            a.head_logits.copy_(torch.rand(a.head_logits.shape, generator=generator) * 0.05 + 1.0)
            for bn in (a.bn_3x3, a.bn_1x1):
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.1)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.5)
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator) + 0.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.1)


def load_supernet_checkpoint(supernet: nn.Module, path: str) -> None:
    """Load supernet weights saved by search/fine-tune (a state dict, possibly inside a training checkpoint)."""
    from ..models import describe_key_mismatch, read_state_dict

    state = read_state_dict(path)
    own = supernet.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise SpvitError(f"supernet checkpoint '{path}' does not fit: {describe_key_mismatch(missing, unexpected)}")
    for name, buf in state.items():  # pinned-gate buffers are empty or full-size: take the saved shape
        if name.endswith(".gates.fixed"):
            supernet.get_submodule(name.rsplit(".", 1)[0]).fixed = buf.clone()
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise SpvitError(f"supernet checkpoint '{path}' does not fit: {first}") from None
