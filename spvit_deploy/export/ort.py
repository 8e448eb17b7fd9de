"""ONNX Runtime sessions configured one way for the export check, the verify stage and the benchmark.

Torch-free on purpose: benchmark workers that only run ONNX Runtime never import torch.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from ..errors import SpvitError, require


def ort_session(path: str | os.PathLike[str], threads: int | None = None, providers: Sequence[str] | None = None,
                optimized_path: str | os.PathLike[str] | None = None, profile_prefix: str | None = None) -> Any:
    """A session with all graph optimizations and `threads` intra-op threads (None: ORT's default).

    Worker threads stop spinning when a run returns (`session.force_spinning_stop`), so sessions
    timed in turn on the same cores do not steal each other's time between runs.
    `optimized_path` saves the graph ORT actually runs (after its fusions), for inspection;
    `profile_prefix` turns ORT's profiler on (`session.end_profiling()` returns the file).
    """
    ort = require("onnxruntime", "onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.force_spinning_stop", "1")
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    avail = ort.get_available_providers()
    providers = list(providers or ["CPUExecutionProvider"])
    missing = [p for p in providers if p not in avail]
    if missing:
        raise SpvitError(f"ONNX Runtime has no {', '.join(missing)} here (available: {', '.join(avail)})")
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpvitError(f"ONNX Runtime cannot load '{path}': {first}") from None
