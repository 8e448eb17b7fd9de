"""Stage 5: a plain (or dense) network -> a checked, simplified ONNX graph with deploy metadata.

`export_onnx(model, "model.onnx")` exports with a dynamic batch axis, simplifies, writes metadata
and checks ONNX Runtime against PyTorch before the file appears; `pad_ffn_widths` pads trimmed
FFNs with zero units; `load_export_model` builds what to export from a run or a model + spec.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "export_onnx": "onnx",
    "ExportReport": "onnx",
    "read_metadata": ".onnx_io",
    "ort_session": "ort",
    "pad_ffn_widths": "pad",
    "load_export_model": "source",
    "SourcedModel": ".model_source",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
