"""Latency-aware compression: a measured lookup table of per-block op and FFN latencies on the
deployment runtime (`profile_latency` -> `lut.json`), the latency model over it (`predict_latency`,
and `supernet_latency`, its differentiable form for the search), and measuring a run's real latency.

    lut = profile_latency("deit_s", "lut.json", backend="onnxruntime", batches=(1, 16))  # spvit-deploy profile-latency
    predict_latency(load_paper_arch("deit_small"), load_lut("lut.json"), batch=1).total_ms
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "LatencyTable": "table", "load_lut": "table", "check_compatible": "table", "check_here": "table",
    "here_fingerprint": "table",
    "predict_latency": "predict", "supernet_latency": "predict", "LatencyPrediction": "predict",
    "profile_latency": "profile",
    "measure_specs": "measure", "measure_run": "measure",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
