"""MAC and parameter accounting for dense ViTs and any architecture spec.

Counts the multiply-accumulates of every matmul and convolution (the attention matmuls
included), as `torch.utils.flop_counter` does (it reports 2 FLOPs per MAC); norms,
activations and softmax are not counted. Per block, T = N + 1 tokens, width C, head width d:
  msa     = 4*T*C^2 (qkv + proj) + 2*T^2*C (q@k^T, attn@v)
  conv3x3 = (9*C*d + d*C)*N        conv1x1 = 2*C*d*N       skip = 0
  ffn     = 2*T*C*w
The formulas take tensors too, so the supernet's complexity loss uses the same code.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .models import ViTDims
from .spec import ArchSpec


def attn_macs(op: str, dims: ViTDims) -> int:
    C, d, N, T = dims.embed_dim, dims.head_dim, dims.num_patches, dims.num_tokens
    if op == "msa":
        return 4 * T * C * C + 2 * T * T * C
    if op == "conv3x3":
        return (9 * C * d + d * C) * N
    if op == "conv1x1":
        return 2 * C * d * N
    return 0


def attn_params(op: str, dims: ViTDims) -> int:
    C, d = dims.embed_dim, dims.head_dim
    if op == "msa":
        return 3 * C * C + (3 * C if dims.qkv_bias else 0) + C * C + C
    if op in ("conv3x3", "conv1x1"):
        k = 3 if op == "conv3x3" else 1
        return k * k * C * d + d + d * C + C
    return 0


def ffn_macs(width: Any, dims: ViTDims) -> Any:
    """MACs of one FFN of hidden `width` (int or tensor)."""
    return 2 * dims.num_tokens * dims.embed_dim * width


def ffn_params(width: int, dims: ViTDims) -> int:
    C = dims.embed_dim
    return 2 * C * width + width + C


def fixed_macs(dims: ViTDims) -> int:
    """Patch embedding and classifier: what no gate can remove."""
    ph, pw = dims.patch_size
    embed = dims.num_patches * dims.in_chans * ph * pw * dims.embed_dim
    return embed + dims.embed_dim * dims.num_classes


def fixed_params(dims: ViTDims) -> int:
    C = dims.embed_dim
    ph, pw = dims.patch_size
    embed = dims.in_chans * ph * pw * C + C
    tokens = C + dims.num_tokens * C  # cls token, position embedding
    norms = dims.depth * 2 * 2 * C + 2 * C
    head = C * dims.num_classes + dims.num_classes
    return embed + tokens + norms + head


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


def cost(dims: ViTDims, spec: ArchSpec | None = None) -> Cost:
    """MACs and parameters of the dense model (`spec=None`) or of `spec` materialized."""
    blocks = []
    for i in range(dims.depth):
        op = "msa" if spec is None else spec.blocks[i].attn
        w = dims.mlp_hidden[i] if spec is None else spec.blocks[i].ffn_width
        blocks.append(
            BlockCost(
                block=i,
                attn=op,
                ffn_width=w,
                attn_macs=attn_macs(op, dims),
                ffn_macs=ffn_macs(w, dims),
                params=attn_params(op, dims) + ffn_params(w, dims),
            )
        )
    macs = fixed_macs(dims) + sum(b.macs for b in blocks)
    params = fixed_params(dims) + sum(b.params for b in blocks)
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
