"""Serving: Triton Inference Server model repositories from a run folder, and a client.

`export_triton(run, repo)` writes `repo/NAME/config.pbtxt`, `repo/NAME/1/model.onnx|model.plan`
and `labels.txt`; `check_model_dir` parses a config against Triton's own `ModelConfig` message
and compares it with the model file; `client` sends images over HTTP and prints the top 5.
"""
from __future__ import annotations

from .triton_config import (
    BACKENDS,
    ModelSignature,
    TensorInfo,
    check_model_dir,
    engine_signature,
    model_config_pb2,
    onnx_signature,
)
from .triton_repo import TritonModel, export_triton, write_model

__all__ = [
    "BACKENDS",
    "ModelSignature",
    "TensorInfo",
    "TritonModel",
    "check_model_dir",
    "engine_signature",
    "export_triton",
    "model_config_pb2",
    "onnx_signature",
    "write_model",
]
