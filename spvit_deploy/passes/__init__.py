"""Stage 5b: ONNX-to-ONNX graph passes, run anywhere (no TensorRT): the fp16 conversion, the plugin
pass (each conv block -> one SpvitConvAttn node), their composition for an engine (`prepare_graph`),
and the checks and CPU reference execution their graphs are tested with.

`export --fp16/--plugins` and `build-engine` compose the same passes (`transform_graph`); ONNX files
and their metadata go through `spvit_deploy.onnx_io`.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "convert_to_fp16": "fp16",
    "Fp16Report": "fp16",
    "insert_conv_attn_plugins": "plugins",
    "PluginReport": "plugins",
    "conv_attn_numpy": "plugins",
    "check_graph": "checks",
    "run_reference": "checks",
    "transform_graph": "prepare",
    "export_for_engine": "prepare",
    "prepare_graph": "prepare",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
