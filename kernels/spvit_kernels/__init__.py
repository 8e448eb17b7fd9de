"""Fused Triton kernels for SPViT deployment and their pure-PyTorch references.

The references import eagerly (torch only); the Triton launchers load on first use,
so `import spvit_kernels` works where triton is missing.
"""

from __future__ import annotations

from typing import Any

from .reference import conv_attn_reference, conv_block_reference

_LAZY = {"fused_conv_block", "fused_conv_attn", "use_triton", "pack_conv_weight", "CONFIGS", "configs_for"}

__all__ = ["conv_attn_reference", "conv_block_reference", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'spvit_kernels' has no attribute {name!r}")
    try:
        from . import conv_block
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"spvit_kernels.{name} needs triton: pip install 'spvit-deploy[triton]' ({err})") from err
    return getattr(conv_block, name)
