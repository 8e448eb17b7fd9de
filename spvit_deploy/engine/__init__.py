"""Stage 6: ONNX -> TensorRT: the builder, the plugin's TensorRT registration and the runner (NVIDIA
machines only). The graph it builds from comes from the passes in `spvit_deploy.passes`.

`build_engine(prepare_graph(...)[0], "model.plan")`; TensorRT, pycuda and triton are imported only
inside the functions that need them.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "build_engine": "build",
    "BuildSettings": "build",
    "TensorRTRunner": "runner",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
