"""timm's SwinTransformer (`swin_tiny|small|base_patch4_window7_224` and any Swin of the same block
structure): stages of NHWC blocks on R x R maps, shifted-window MSA with relative position bias,
patch merging between stages, no class token (SPVIT-SWIN.md).

Method constants that differ from DeiT: alpha 100; head-mixing column 0 is the kernel centre and
columns 1-4 / 5-8 fill kernel positions 0-3 / 5-8 (column-major); a skip block of a published
(official fine-tuned) Swin computes x + LN1(x). The conv ops run on the whole unshifted map, in the
search as in deployment (`conv_scope = "full_map"`; the official search ran the 3x3 per shifted window,
a different op from the one it fine-tuned). The MSA keeps its windows, relative position bias and
shift mask.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpvitError
from ..supernet.layers import GatedMlp, SinglePathAttention
from .base import CONV_KERNEL, BlockGeom, ModelDims, ModelFamily
from .vit import attn_state, mlp_state, trim_mlp

# kernel position p = row + 3*col of each head-mixing column m (SPVIT-SWIN.md section 1)
SWIN_POSITIONS: tuple[int, ...] = (4, 0, 1, 2, 3, 5, 6, 7, 8)


def window_heads(attn: nn.Module, qkv: torch.Tensor, window: tuple[int, int], shift: tuple[int, int],
                 mask: torch.Tensor | None) -> torch.Tensor:
    """timm's shifted-window attention up to its output projection, from `attn.qkv(x)` of the whole
    unshifted map (B, H, W, 3A): roll, windows, softmax(q k^T * scale + bias + mask) v, windows merged,
    rolled back: (B, H, W, A). A pointwise projection commutes with roll and windows, so
    `attn.proj(window_heads(...))` is timm's `SwinTransformerBlock._attn`."""
    from timm.models.swin_transformer import window_partition, window_reverse

    B, H, W, C3 = qkv.shape
    heads, wh, ww = attn.num_heads, window[0], window[1]
    n = wh * ww
    if any(shift):
        qkv = torch.roll(qkv, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    win = window_partition(qkv, window).reshape(-1, n, 3, heads, C3 // (3 * heads))
    q, k, v = win.permute(2, 0, 3, 1, 4).unbind(0)  # (B*nW, heads, n, d)
    a = (q * attn.scale) @ k.transpose(-2, -1) + attn._get_rel_pos_bias()
    if mask is not None:
        nw = mask.shape[0]
        a = (a.view(-1, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, heads, n, n)
    o = attn.attn_drop(a.softmax(dim=-1)) @ v
    o = window_reverse(o.transpose(1, 2).reshape(-1, wh, ww, C3 // 3), window, H, W)
    return torch.roll(o, shifts=shift, dims=(1, 2)) if any(shift) else o


class SwinSinglePathAttention(SinglePathAttention):
    """The single-path layer on a Swin block's normalised map (B, R, R, C) -> (B, R, R, C): MSA in
    (shifted) windows, conv3x3 / conv1x1 on the whole map, skip; no class token."""

    def __init__(self, block: nn.Module, alpha: float, gate_init: float,
                 positions: tuple[int, ...] = SWIN_POSITIONS) -> None:
        super().__init__(block.attn, tuple(block.input_resolution), alpha=alpha, gate_init=gate_init,
                         positions=positions)
        self.window, self.shift = tuple(block.window_size), tuple(block.shift_size)
        self.register_buffer("attn_mask", block.attn_mask, persistent=False)

    def msa_forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = window_heads(self.msa, self.msa.qkv(x), self.window, self.shift, self.attn_mask)
        return self.msa.proj_drop(self.msa.proj(heads))

    def conv_branch(self, x: torch.Tensor, op: str) -> torch.Tensor:
        """Reference form on the full map: (B, R, R, C) -> (B, R, R, C)."""
        w, b, proj = self.conv_weights(op)
        y = F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=w.shape[-1] // 2)
        y = F.relu(self.bn(op)(y)).permute(0, 2, 3, 1)
        return F.linear(y, proj, self.msa.proj.bias)

    def search_forward(self, x: torch.Tensor, g: torch.Tensor, w_msa: torch.Tensor, w_3x3: torch.Tensor,
                       w_1x1: torch.Tensor) -> torch.Tensor:
        """Every branch from one qkv projection of the map and one output projection (see the base)."""
        attn, C = self.msa, self.dim
        B, R1, R2, _ = x.shape
        qkv = attn.qkv(x)
        heads = window_heads(attn, qkv, self.window, self.shift, self.attn_mask)
        r3, r1 = self.shared_conv_features(qkv[..., 2 * C:].reshape(B, R1 * R2, C))
        O = self._mixed_projections(self.mixing())
        W = torch.cat([attn.proj.weight * w_msa, O.sum(0) * w_3x3, O[self.centre] * w_1x1], dim=1)
        b = attn.proj.bias
        feats = torch.cat([heads, r3.reshape(B, R1, R2, -1), r1.reshape(B, R1, R2, -1)], dim=-1)
        return F.linear(feats, W, None if b is None else b * (w_msa + w_3x3 + w_1x1))

    def _can_share(self, kwargs: dict[str, Any]) -> bool:
        return not (self.training and self.msa.proj_drop.p > 0)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        g = self.nested_gates()
        self.last_gates = g.detach()
        w_msa, w_3x3, w_1x1 = g[2], g[1] * (1 - g[2]), g[0] * (1 - g[1]) * (1 - g[2])
        compute_all = self.training and not self.gates.is_fixed
        if compute_all and self.shared_values and self._can_share(kwargs):
            return self.search_forward(x, g, w_msa, w_3x3, w_1x1)
        out = torch.zeros_like(x)
        if compute_all or bool(w_msa):
            out = out + w_msa * self.msa_forward(x)
        if compute_all or bool(w_3x3):
            out = out + w_3x3 * self.conv_branch(x, "conv3x3")
        if compute_all or bool(w_1x1):
            out = out + w_1x1 * self.conv_branch(x, "conv1x1")
        if self.skip_input and not compute_all:
            out = out + (1 - g[0]) * x
        return out


class SwinSupernetBlock(nn.Module):
    """A Swin block with its attention and FFN wrapped: x + DropPath(branch(LN1(x))), then the FFN.
    The dense weights keep their names (`norm1`, `attn.msa.*`, `norm2`, `mlp.fc1`, `mlp.fc2`)."""

    def __init__(self, block: nn.Module, alpha: float, gate_init: float, positions: tuple[int, ...]) -> None:
        super().__init__()
        self.norm1, self.drop_path1 = block.norm1, block.drop_path1
        self.attn = SwinSinglePathAttention(block, alpha, gate_init, positions)
        self.norm2, self.drop_path2 = block.norm2, block.drop_path2
        self.mlp = GatedMlp(block.mlp, gate_init=gate_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        x = x.reshape(B, -1, C)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.reshape(B, H, W, C)


class MapConvAttention(nn.Module):
    """A deployed Swin conv block's branch on the full map: Conv2d (BN folded) C -> d, ReLU, Linear
    d -> C; (B, R, R, C) -> (B, R, R, C), no windows, no roll."""

    def __init__(self, dim: int, head_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, head_dim, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU()
        self.proj = nn.Linear(head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv.kernel_size == (1, 1):  # a Linear over the channels, no layout change
            y = self.act(F.linear(x, self.conv.weight.flatten(1), self.conv.bias))
        else:
            y = self.act(self.conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.proj(y)


class PlainSwinBlock(nn.Module):
    """A deployed Swin block without attention: conv (x + conv(LN1(x))), skip with the input branch
    (x + LN1(x), what official fine-tuning trained) or the zero branch (x; no LN1 kept), then the FFN."""

    def __init__(self, block: nn.Module, attn: nn.Module | None, keep_norm1: bool) -> None:
        super().__init__()
        self.norm1 = block.norm1 if keep_norm1 else None
        self.attn = attn
        self.norm2, self.mlp = block.norm2, block.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        if self.norm1 is not None:
            y = self.norm1(x)
            x = x + (self.attn(y) if self.attn is not None else y)
        x = x.reshape(B, -1, C)
        x = x + self.mlp(self.norm2(x))
        return x.reshape(B, H, W, C)


class SwinFamily(ModelFamily):
    name = "swin"
    alpha = 100.0
    positions = SWIN_POSITIONS
    skip_branch = "input"
    conv_scope = "full_map"
    official_importer = "spvit_deploy.official_swin:import_official_swin"

    def accepts(self, model: nn.Module) -> bool:
        from timm.models.swin_transformer import SwinTransformer

        return isinstance(model, SwinTransformer)

    def check_supported(self, model: nn.Module, name: str) -> None:
        from timm.layers import Mlp
        from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, WindowAttention

        reason = None
        if type(model) is not SwinTransformer:
            reason = f"it is a {type(model).__name__}, not a timm SwinTransformer"
        elif model.head.global_pool.pool_type != "avg":
            reason = f"its head pools with '{model.head.global_pool.pool_type}', not the average"
        else:
            for i, path in enumerate(self.block_paths(model)):
                blk = model.get_submodule(path)
                if type(blk) is not SwinTransformerBlock or type(blk.attn) is not WindowAttention \
                        or type(blk.mlp) is not Mlp or not isinstance(blk.mlp.norm, nn.Identity):
                    reason = f"block {i} ({path}) is not a plain SwinTransformerBlock with WindowAttention and Mlp"
                elif blk.dynamic_mask or any(r % w for r, w in zip(blk.input_resolution, blk.window_size)):
                    reason = f"block {i} ({path}) has a map that its windows do not tile"
                elif blk.attn.num_heads * (blk.dim // blk.attn.num_heads) != blk.dim:
                    reason = f"block {i} ({path}) has a head width other than dim / heads"
                if reason:
                    break
        if reason:
            raise SpvitError(f"model '{name}' is not supported: {reason}")

    def checkpoint_filter(self, state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        from timm.models.swin_transformer import checkpoint_filter_fn

        return checkpoint_filter_fn(state, model)

    def block_paths(self, model: nn.Module) -> list[str]:
        return [f"layers.{i}.blocks.{j}" for i, stage in enumerate(model.layers) for j in range(len(stage.blocks))]

    def dims(self, model: nn.Module) -> ModelDims:
        geoms = []
        for blk in self.blocks(model):
            msa = blk.attn.msa if isinstance(blk, SwinSupernetBlock) else blk.attn
            mlp = blk.mlp
            geoms.append(BlockGeom(
                dim=int(msa.qkv.in_features), heads=int(msa.num_heads), grid=tuple(int(r) for r in msa_grid(blk)),
                prefix=0, span=int(msa.window_area), dense_width=int(getattr(mlp, "dense_width", mlp.fc1.out_features)),
                qkv_bias=msa.qkv.bias is not None, rel_bias_params=int(msa.relative_position_bias_table.numel())))
        pe = model.patch_embed
        ph, pw = pe.patch_size
        gh, gw = pe.grid_size
        E = int(pe.proj.out_channels)
        in_chans = int(pe.proj.in_channels)
        macs = gh * gw * in_chans * ph * pw * E
        params = in_chans * ph * pw * E + E + (2 * E if not isinstance(pe.norm, nn.Identity) else 0)
        for stage in model.layers:
            ds = stage.downsample
            if not isinstance(ds, nn.Identity):
                r = stage.output_resolution[0] * stage.output_resolution[1]
                macs += r * ds.reduction.in_features * ds.reduction.out_features
                params += 2 * ds.norm.normalized_shape[0] + ds.reduction.weight.numel()
        params += sum(g.norm_params for g in geoms)
        C = model.num_features
        params += 2 * C + C * model.num_classes + model.num_classes
        macs += C * model.num_classes
        return ModelDims(family=self.name, blocks=tuple(geoms), fixed_macs=macs, fixed_params=params,
                         num_classes=int(model.num_classes), in_chans=in_chans, img_size=int(pe.img_size[0]))

    def to_supernet(self, model: nn.Module, alpha: float, gate_init: float) -> nn.Module:
        self.check_supported(model, type(model).__name__)
        for stage in model.layers:
            for j, blk in enumerate(stage.blocks):
                stage.blocks[j] = SwinSupernetBlock(blk, alpha, gate_init, self.positions)
        return model

    def build_plain(self, model: nn.Module, spec: Any, device: Any) -> nn.Module:
        bspecs = iter(spec.blocks)
        for stage in model.layers:
            for j, blk in enumerate(stage.blocks):
                b = next(bspecs)
                trim_mlp(blk, b.ffn_width, blk.dim, device)
                if b.attn in CONV_KERNEL:
                    conv = MapConvAttention(blk.dim, blk.dim // blk.attn.num_heads, CONV_KERNEL[b.attn]).to(device)
                    stage.blocks[j] = PlainSwinBlock(blk, conv, keep_norm1=True)
                elif b.attn == "skip":
                    stage.blocks[j] = PlainSwinBlock(blk, None, keep_norm1=spec.skip_branch == "input")
        return model

    def plain_block_state(self, block: nn.Module, bspec: Any, skip_branch: str, prefix: str) -> dict[str, torch.Tensor]:
        keep_norm1 = not (bspec.attn == "skip" and skip_branch == "zero")
        parts = ("norm1", "norm2") if keep_norm1 else ("norm2",)
        state = {f"{prefix}{p}.{k}": v for p in parts for k, v in getattr(block, p).state_dict().items()}
        state.update(attn_state(block.attn, bspec.attn, f"{prefix}attn."))
        state.update(mlp_state(block.mlp, bspec.ffn_kept, f"{prefix}mlp."))
        return state


def msa_grid(blk: nn.Module) -> tuple[int, int]:
    """The block's map size (R, R): timm blocks keep it as `input_resolution`, wrapped ones as `attn.grid`."""
    res = getattr(blk, "input_resolution", None)
    return tuple(res) if res is not None else tuple(blk.attn.grid)
