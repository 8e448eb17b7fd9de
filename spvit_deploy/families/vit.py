"""Class-token ViTs (timm `VisionTransformer`: DeiT, ViT): one flat list of pre-norm blocks on a
(gh, gw) patch grid plus a class token, global attention, head-mixing alpha 0.01, column k is
kernel position k (the centre is column 4)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SpvitError
from .base import CONV_KERNEL, BlockGeom, ModelDims, ModelFamily


@dataclass(frozen=True)
class ViTDims:
    """The shape facts of a class-token ViT that MAC counting and specs need."""

    embed_dim: int
    num_heads: int
    depth: int
    mlp_hidden: tuple[int, ...]  # dense FFN width per block
    grid: tuple[int, int]  # patch grid (gh, gw)
    patch_size: tuple[int, int]
    in_chans: int
    num_classes: int
    qkv_bias: bool

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        return self.num_patches + 1


def check_vit_supported(model: nn.Module, name: str) -> None:
    """Raise unless `model` is a timm VisionTransformer with one class token and plain blocks."""
    from timm.layers import Attention, Mlp
    from timm.models.vision_transformer import Block, VisionTransformer

    reason = None
    if not isinstance(model, VisionTransformer):
        reason = f"it is a {type(model).__name__}, not a timm VisionTransformer"
    elif model.cls_token is None or model.num_prefix_tokens != 1:
        reason = "it needs exactly one class token and no register tokens"
    elif model.global_pool != "token":
        reason = f"its head pools with '{model.global_pool}', not the class token"
    elif getattr(model, "dynamic_img_size", False):
        reason = "dynamic image size is not supported"
    else:
        for i, blk in enumerate(model.blocks):
            if type(blk) is not Block or type(blk.attn) is not Attention or type(blk.mlp) is not Mlp:
                reason = f"block {i} is not a plain pre-norm Block with Attention and Mlp"
                break
            if not isinstance(blk.attn.norm, nn.Identity) or getattr(blk.attn, "gate", None) is not None:
                reason = f"block {i} normalises or gates its attention output"
                break
            if not isinstance(blk.mlp.norm, nn.Identity):
                reason = f"block {i} normalises its FFN hidden units"
                break
    if reason:
        raise SpvitError(f"model '{name}' is not supported: {reason}")


def vit_dims(model: nn.Module) -> ViTDims:
    """Read the dimensions of a supported VisionTransformer (dense, supernet or plain)."""
    num_heads, qkv_bias = None, True
    for blk in model.blocks:
        attn = getattr(blk.attn, "msa", blk.attn)  # the supernet wraps timm's Attention as .msa
        if hasattr(attn, "num_heads"):
            num_heads, qkv_bias = attn.num_heads, attn.qkv.bias is not None
            break
        if hasattr(attn, "conv"):  # a plain conv block: d = C / H output channels
            num_heads = model.embed_dim // attn.conv.out_channels
    if num_heads is None:
        raise SpvitError("cannot tell the number of heads: no block keeps attention or a conv")
    widths = []
    for blk in model.blocks:
        fc1 = getattr(blk.mlp, "fc1", None)  # a fully pruned plain FFN has none
        widths.append(getattr(blk.mlp, "dense_width", None) or (fc1.out_features if fc1 is not None else 0))
    pe = model.patch_embed
    return ViTDims(
        embed_dim=model.embed_dim,
        num_heads=int(num_heads),
        depth=len(model.blocks),
        mlp_hidden=tuple(int(w) for w in widths),
        grid=tuple(int(g) for g in pe.grid_size),  # type: ignore[arg-type]
        patch_size=tuple(int(p) for p in pe.patch_size),  # type: ignore[arg-type]
        in_chans=int(pe.proj.in_channels),
        num_classes=int(model.num_classes),
        qkv_bias=qkv_bias,
    )


def vit_fixed_macs(dims: ViTDims) -> int:
    """Patch embedding and classifier."""
    ph, pw = dims.patch_size
    embed = dims.num_patches * dims.in_chans * ph * pw * dims.embed_dim
    return embed + dims.embed_dim * dims.num_classes


def vit_fixed_params(dims: ViTDims) -> int:
    """Patch embedding, class token, position embedding, every norm, classifier."""
    C = dims.embed_dim
    ph, pw = dims.patch_size
    embed = dims.in_chans * ph * pw * C + C
    tokens = C + dims.num_tokens * C  # cls token, position embedding
    norms = dims.depth * 2 * 2 * C + 2 * C
    head = C * dims.num_classes + dims.num_classes
    return embed + tokens + norms + head


def as_model_dims(dims: ViTDims) -> ModelDims:
    """A class-token ViT's `ViTDims` as the family-independent `ModelDims`."""
    geom = tuple(BlockGeom(dim=dims.embed_dim, heads=dims.num_heads, grid=dims.grid, prefix=1, span=dims.num_tokens,
                           dense_width=w, qkv_bias=dims.qkv_bias) for w in dims.mlp_hidden)
    return ModelDims(family="vit", blocks=geom, fixed_macs=vit_fixed_macs(dims), fixed_params=vit_fixed_params(dims),
                     num_classes=dims.num_classes, in_chans=dims.in_chans, img_size=dims.grid[0] * dims.patch_size[0])


class ViTFamily(ModelFamily):
    name = "vit"
    alpha = 0.01
    positions = tuple(range(9))
    skip_branch = "zero"
    official_importer = "spvit_deploy.official:import_official_vit"

    def accepts(self, model: nn.Module) -> bool:
        from timm.models.vision_transformer import VisionTransformer

        return isinstance(model, VisionTransformer)

    def check_supported(self, model: nn.Module, name: str) -> None:
        check_vit_supported(model, name)

    def checkpoint_filter(self, state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        from timm.models.vision_transformer import checkpoint_filter_fn

        return checkpoint_filter_fn(state, model)

    def block_paths(self, model: nn.Module) -> list[str]:
        return [f"blocks.{i}" for i in range(len(model.blocks))]

    def dims(self, model: nn.Module) -> ModelDims:
        return as_model_dims(vit_dims(model))

    def to_supernet(self, model: nn.Module, alpha: float, gate_init: float) -> nn.Module:
        from ..supernet.layers import GatedMlp, SinglePathAttention

        self.check_supported(model, type(model).__name__)
        grid = tuple(model.patch_embed.grid_size)
        for blk in model.blocks:
            blk.attn = SinglePathAttention(blk.attn, grid, alpha=alpha, gate_init=gate_init, positions=self.positions)
            blk.mlp = GatedMlp(blk.mlp, gate_init=gate_init)
        return model

    def build_plain(self, model: nn.Module, spec: Any, device: Any) -> nn.Module:
        from ..plain_layers import ConvAttention, InputBranch, SkipAttention
        grid = tuple(model.patch_embed.grid_size)
        C = model.embed_dim
        for blk, b in zip(model.blocks, spec.blocks):
            d = C // blk.attn.num_heads
            if b.attn in CONV_KERNEL:
                blk.attn = ConvAttention(C, d, CONV_KERNEL[b.attn], grid).to(device)
            elif b.attn == "skip":
                blk.attn = InputBranch() if spec.skip_branch == "input" else SkipAttention()
            trim_mlp(blk, b.ffn_width, C, device)
        return model

    def plain_block_state(self, block: nn.Module, bspec: Any, skip_branch: str, prefix: str) -> dict[str, torch.Tensor]:
        state = {f"{prefix}{k}": v for k, v in block.state_dict().items() if not k.startswith(("attn.", "mlp."))}
        state.update(attn_state(block.attn, bspec.attn, f"{prefix}attn."))
        state.update(mlp_state(block.mlp, bspec.ffn_kept, f"{prefix}mlp."))
        return state


# -- helpers shared by the families ------------------------------------------------------------

def trim_mlp(blk: nn.Module, width: int, dim: int, device: Any) -> None:
    """Give `blk.mlp` `width` hidden units (a `BiasOnly` when none is kept)."""
    from ..plain_layers import BiasOnly

    if width == 0:
        blk.mlp = BiasOnly(dim).to(device)
    else:
        blk.mlp.fc1 = nn.Linear(dim, width, device=device)
        blk.mlp.fc2 = nn.Linear(width, dim, device=device)


def attn_state(attn: nn.Module, op: str, prefix: str) -> dict[str, torch.Tensor]:
    """A supernet attention's plain weights for `op`: the MSA's own, or the conv's with BN folded."""
    from ..supernet.layers import conv_state

    if op == "msa":
        return {f"{prefix}{k}": v for k, v in attn.msa.state_dict().items()}
    if op in CONV_KERNEL:
        return conv_state(attn, op, prefix)
    return {}


def mlp_state(mlp: nn.Module, kept: tuple[int, ...], prefix: str) -> dict[str, torch.Tensor]:
    """A gated FFN trimmed to the `kept` units (fc2's bias alone when none is kept)."""
    fc1, fc2 = mlp.fc1, mlp.fc2
    if not kept:
        return {f"{prefix}bias": fc2.bias}
    idx = torch.tensor(kept, dtype=torch.long, device=fc1.weight.device)
    return {f"{prefix}fc1.weight": fc1.weight[idx], f"{prefix}fc1.bias": fc1.bias[idx],
            f"{prefix}fc2.weight": fc2.weight[:, idx], f"{prefix}fc2.bias": fc2.bias}
