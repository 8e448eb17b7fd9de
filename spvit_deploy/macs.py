"""MAC and parameter accounting for dense models of every family and any architecture spec.

Counts the multiply-accumulates of every matmul and convolution (the attention matmuls
included), as `torch.utils.flop_counter` does (it reports 2 FLOPs per MAC); norms,
activations and softmax are not counted. Per block (`BlockGeom`), T tokens (N patches plus
prefix tokens), width C, head width d, S tokens attended per query (T in a ViT, a window in Swin):
  msa     = 4*T*C^2 (qkv + proj) + 2*T*S*C (q@k^T, attn@v)
  conv3x3 = (9*C*d + d*C)*N        conv1x1 = 2*C*d*N       skip = 0
  ffn     = 2*T*C*w
The formulas take tensors too, so the supernet's complexity loss uses the same code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .families import BlockGeom, ModelDims
from .families.vit import ViTDims
from .families.vit import as_model_dims as vit_as_model_dims
from .spec import ArchSpec


def attn_macs(op: str, g: BlockGeom) -> int:
    """MACs of one block's attention op; the MSA attends `span` tokens per query (all, or a window)."""
    C, d, N, T = g.dim, g.head_dim, g.num_patches, g.tokens
    if op == "msa":
        return 4 * T * C * C + 2 * T * g.span * C
    if op == "conv3x3":
        return (9 * C * d + d * C) * N
    if op == "conv1x1":
        return 2 * C * d * N
    return 0


def attn_params(op: str, g: BlockGeom) -> int:
    C, d = g.dim, g.head_dim
    if op == "msa":
        return 3 * C * C + (3 * C if g.qkv_bias else 0) + C * C + C + g.rel_bias_params
    if op in ("conv3x3", "conv1x1"):
        k = 3 if op == "conv3x3" else 1
        return k * k * C * d + d + d * C + C
    return 0


def ffn_macs(width: Any, g: BlockGeom) -> Any:
    """MACs of one FFN of hidden `width` (int or tensor)."""
    return 2 * g.tokens * g.dim * width


def ffn_params(width: int, g: BlockGeom) -> int:
    C = g.dim
    return 2 * C * width + width + C


def dropped_norm_params(op: str, g: BlockGeom, skip_branch: str) -> int:
    """A zero-branch skip block without prefix tokens reads no LN1: the plain network drops it."""
    return 2 * g.dim if op == "skip" and skip_branch == "zero" and g.prefix == 0 else 0


def fixed_macs(dims: ModelDims | ViTDims) -> int:
    """Patch embedding, patch merging and classifier: what no gate can remove."""
    return as_model_dims(dims).fixed_macs


def as_model_dims(dims: ModelDims | ViTDims) -> ModelDims:
    """`ModelDims` as they are; a class-token ViT's `ViTDims` as `ModelDims`."""
    return dims if isinstance(dims, ModelDims) else vit_as_model_dims(dims)


@dataclass(frozen=True)
class BlockCost:
    block: int
    attn: str
    ffn_width: int
    attn_macs: int
    ffn_macs: int
    params: int

    @property
    def macs(self) -> int:
        return self.attn_macs + self.ffn_macs


@dataclass(frozen=True)
class Cost:
    macs: int
    params: int
    blocks: tuple[BlockCost, ...]

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "gmacs": round(self.gmacs, 4),
            "macs": self.macs,
            "params": self.params,
            "blocks": [asdict(b) | {"macs": b.macs} for b in self.blocks],
        }


def cost(dims: ModelDims | ViTDims, spec: ArchSpec | None = None) -> Cost:
    """MACs and parameters of the dense model (`spec=None`) or of `spec` materialized."""
    dims = as_model_dims(dims)
    blocks = []
    skip_branch = spec.skip_branch if spec is not None else "zero"
    for i, g in enumerate(dims.blocks):
        op = "msa" if spec is None else spec.blocks[i].attn
        w = g.dense_width if spec is None else spec.blocks[i].ffn_width
        blocks.append(
            BlockCost(
                block=i,
                attn=op,
                ffn_width=w,
                attn_macs=attn_macs(op, g),
                ffn_macs=ffn_macs(w, g),
                params=attn_params(op, g) + ffn_params(w, g) - dropped_norm_params(op, g, skip_branch),
            )
        )
    macs = dims.fixed_macs + sum(b.macs for b in blocks)
    params = dims.fixed_params + sum(b.params for b in blocks)
    return Cost(macs=macs, params=params, blocks=tuple(blocks))


def arch_stats(
    model: str, arch: ArchSpec | str, img_size: int | None = None, num_classes: int | None = None
) -> dict[str, Any]:
    """Dense vs compressed MACs/params for `model` and `arch` (a spec or `paper:<name>` / path)."""
    from .models import dims_for
    from .spec import resolve_spec

    spec = resolve_spec(arch, model, img_size=img_size, num_classes=num_classes)
    dims = dims_for(spec.model, num_classes=spec.num_classes, img_size=spec.img_size)
    spec.validate_against(dims.depth, dims.mlp_hidden)
    dense, comp = cost(dims), cost(dims, spec)
    return {
        "model": spec.model,
        "img_size": spec.img_size,
        "dense": {"gmacs": round(dense.gmacs, 4), "params": dense.params},
        "compressed": {"gmacs": round(comp.gmacs, 4), "params": comp.params},
        "macs_ratio": round(dense.macs / comp.macs, 4),
        "blocks": [asdict(b) | {"gmacs": round(b.macs / 1e9, 4)} for b in comp.blocks],
    }
