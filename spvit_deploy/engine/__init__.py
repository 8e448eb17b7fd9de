"""Stage 6: ONNX -> TensorRT. Graph passes that run anywhere (fp16 conversion, plugin insertion,
checks, CPU reference execution) and the TensorRT builder and runner (NVIDIA machines only).

`convert_to_fp16(model)`, `insert_conv_attn_plugins(model)`, `prepare_graph(...)` and
`build_engine(...)`; TensorRT, pycuda and triton are imported only inside the functions that need them.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "convert_to_fp16": "fp16",
    "Fp16Report": "fp16",
    "insert_conv_attn_plugins": "plugins",
    "PluginReport": "plugins",
    "conv_attn_numpy": "plugins",
    "check_graph": "graphs",
    "run_reference": "graphs",
    "prepare_graph": "build",
    "transform_graph": "build",
    "build_engine": "build",
    "BuildSettings": "build",
    "TensorRTRunner": "runner",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
