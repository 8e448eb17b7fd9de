"""Stage 7: runners with one `infer(feed) -> outputs` interface, a comparator, and the benchmark.

`BACKENDS` maps a backend name to how its runner is made; absent backends are skipped with a
reason. `benchmark(...)` times the dense and the compressed model interleaved and writes
`results.json`, `report.md` and a plot; `ort_op_profile(...)` sums ONNX Runtime's profile per kind of op.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Runner": "runners",
    "OnnxRuntimeRunner": "runners",
    "TorchRunner": "runners",
    "Backend": "backends",
    "BACKENDS": "backends",
    "register_backend": "backends",
    "backend_status": "backends",
    "Comparison": ".comparison",
    "compare": ".comparison",
    "compare_outputs": ".comparison",
    "BenchSettings": "settings",
    "benchmark": "harness",
    "measure_model": "harness",
    "write_report": "report",
    "environment": ".host",
    "ort_op_profile": "profile",
}

__all__ = list(_EXPORTS)
lazy_exports(__name__, _EXPORTS)
