"""Small models for real-data demos and tests on a CPU, registered in timm's model registry.

`vit_nano_patch4_32`: 32 px input, 4 px patches (an 8x8 grid, like DeiT's 14x14 at 224 px),
width 64, 4 heads, depth 6, FFN 256; about 0.023 GMACs.
`swin_nano_patch4_window4_64`: a Swin with Swin-T's layout at toy size: 64 px input, 4 px patches,
window 4, three stages on 16x16 / 8x8 / 4x4 maps (the last one window, no shift), widths 32/64/128,
heads 1/2/4 (head width 32 everywhere, as in Swin-T/S/B), depths 2/2/2.
Registered on import, so `timm.create_model`, `create_dense`, `build_plain` and `load_run` all
know the names.
"""
from __future__ import annotations

from typing import Any

from timm.models import generate_default_cfgs, register_model
from timm.models.swin_transformer import SwinTransformer, _create_swin_transformer
from timm.models.vision_transformer import VisionTransformer, _create_vision_transformer

__all__ = ["vit_nano_patch4_32", "swin_nano_patch4_window4_64"]

default_cfgs = generate_default_cfgs({
    "vit_nano_patch4_32": {
        "url": "", "num_classes": 10, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": 1.0,
        "interpolation": "bilinear", "fixed_input_size": True, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj", "classifier": "head",
    },
    "swin_nano_patch4_window4_64": {
        "url": "", "num_classes": 10, "input_size": (3, 64, 64), "pool_size": None, "crop_pct": 1.0,
        "interpolation": "bilinear", "fixed_input_size": True, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj", "classifier": "head.fc",
    },
})


@register_model
def vit_nano_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Nano/4 at 32 px: a CPU-sized ViT with DeiT's layout (class token, pre-norm blocks)."""
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0)
    return _create_vision_transformer("vit_nano_patch4_32", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def swin_nano_patch4_window4_64(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin-Nano/4 at 64 px: Swin-T's block structure (shifted windows, patch merging) at toy size."""
    args = dict(img_size=64, patch_size=4, window_size=4, embed_dim=32, depths=(2, 2, 2), num_heads=(1, 2, 4))
    return _create_swin_transformer("swin_nano_patch4_window4_64", pretrained=pretrained, **dict(args, **kwargs))
