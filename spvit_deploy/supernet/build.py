"""Stage 1: dense model -> single-path supernet; pin gates to a spec; derive a spec from gates.

The supernet is the dense timm model with each block's `attn` and `mlp` wrapped in place by its
family (`families/`), so the dense weights keep their names under `<block>.attn.msa.*` and
`<block>.mlp.*` (`blocks.i` in a ViT, `layers.i.blocks.j` in Swin).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import macs as M
from ..errors import SpvitError
from ..families import ModelDims, family_of
from ..spec import OP_CODES, ArchSpec, BlockSpec
from .layers import SinglePathAttention

ALPHA = 0.01  # the class-token ViT family's; every family has its own (`ModelFamily.alpha`)
GATE_INIT = 1.5


def to_supernet(model: nn.Module, alpha: float | None = None, gate_init: float = GATE_INIT) -> nn.Module:
    """Wrap a dense model's blocks in place; with all gates on it computes the dense model.
    `alpha` (the head-mixing temperature) defaults to the family's (DeiT 0.01, Swin 100)."""
    if is_supernet(model):
        return model
    fam = family_of(model)
    return fam.to_supernet(model, fam.alpha if alpha is None else alpha, gate_init)


def supernet_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks in spec order; in a supernet each has `.attn` (single-path) and `.mlp` (gated)."""
    return family_of(model).blocks(model)


def is_supernet(model: nn.Module) -> bool:
    try:
        blocks = supernet_blocks(model)
    except SpvitError:
        return False
    return len(blocks) > 0 and isinstance(getattr(blocks[0], "attn", None), SinglePathAttention)


def _require_supernet(model: nn.Module) -> None:
    if not is_supernet(model):
        raise SpvitError("expected a supernet (see spvit_deploy.to_supernet)")


def fix_gates(supernet: nn.Module, spec: ArchSpec | None) -> nn.Module:
    """Pin every gate to `spec` (ops and kept FFN units); `None` unpins them."""
    _require_supernet(supernet)
    blocks = supernet_blocks(supernet)
    if spec is not None:
        spec.validate_against(len(blocks), [b.mlp.dense_width for b in blocks])
    for i, blk in enumerate(blocks):
        blk.attn.skip_input = spec is not None and spec.skip_branch == "input"
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
    for blk in supernet_blocks(supernet):
        blk.attn.skip_input = False
        blk.attn.gates.fix(torch.full((3,), float(on)))
        blk.mlp.gates.fix(torch.full((blk.mlp.dense_width,), float(on)))
    return supernet


def block_op(attn: SinglePathAttention) -> str:
    code = tuple(int(v) for v in torch.cumprod(attn.gates.kept().long(), 0).tolist())
    return next(op for op, c in OP_CODES.items() if c == code)


def derive_spec(supernet: nn.Module, model_name: str, source: str = "search") -> ArchSpec:
    """The architecture the gates choose now (p > 0.5, or their pinned values)."""
    _require_supernet(supernet)
    fam = family_of(supernet)
    blocks = []
    for blk in fam.blocks(supernet):
        kept = torch.nonzero(blk.mlp.gates.kept()).flatten().tolist()
        blocks.append(BlockSpec(attn=block_op(blk.attn), ffn_kept=tuple(int(k) for k in kept)))
    return ArchSpec(model=model_name, img_size=fam.img_size(supernet), num_classes=int(supernet.num_classes),
                    blocks=tuple(blocks), source=source, family=fam.name, conv_scope=fam.conv_scope)


def supernet_macs(supernet: nn.Module, dims: ModelDims | None = None) -> torch.Tensor:
    """Differentiable MACs of the architecture the gates choose (hard value, sigmoid gradient)."""
    _require_supernet(supernet)
    fam = family_of(supernet)
    dims = dims or fam.dims(supernet)
    blocks = fam.blocks(supernet)
    total = torch.tensor(float(dims.fixed_macs), device=blocks[0].mlp.gates.logits.device)
    for blk, geom in zip(blocks, dims.blocks):
        costs = {op: float(M.attn_macs(op, geom)) for op in ("msa", "conv3x3", "conv1x1")}
        g = torch.cumprod(blk.attn.gates.indicator(), 0)
        total = total + g[2] * costs["msa"] + g[1] * (1 - g[2]) * costs["conv3x3"]
        total = total + g[0] * (1 - g[1]) * (1 - g[2]) * costs["conv1x1"]
        total = total + M.ffn_macs(blk.mlp.gates.indicator().sum(), geom)
    return total


def randomize_supernet_state(supernet: nn.Module, generator: torch.Generator) -> None:
    """Give head-mixing logits and BatchNorms non-trivial values (for exactness checks)."""
    _require_supernet(supernet)
    with torch.no_grad():
        for blk in supernet_blocks(supernet):
            a = blk.attn
            a.head_logits.copy_(torch.rand(a.head_logits.shape, generator=generator) * 0.05 + 1.0)
            for bn in (a.bn_3x3, a.bn_1x1):
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=generator) * 0.1)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.5)
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=generator) + 0.5)
                bn.bias.copy_(torch.randn(bn.bias.shape, generator=generator) * 0.1)


def load_supernet_checkpoint(supernet: nn.Module, path: str) -> None:
    """Load supernet weights saved by search/fine-tune (a state dict, possibly inside a training checkpoint)."""
    from ..models import check_state_keys, read_state_dict

    state = read_state_dict(path)
    check_state_keys(supernet.state_dict(), state, f"supernet checkpoint '{path}' does not fit")
    for name, buf in state.items():  # pinned-gate buffers are empty or full-size: take the saved shape
        if name.endswith(".gates.fixed"):
            supernet.get_submodule(name.rsplit(".", 1)[0]).fixed = buf.clone()
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise SpvitError(f"supernet checkpoint '{path}' does not fit: {first}") from None
