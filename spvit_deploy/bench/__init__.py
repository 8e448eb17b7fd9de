"""Stage 7: runners with one `infer(feed) -> outputs` interface, a comparator, and the benchmark.

`BACKENDS` maps a backend name to how its runner is made; absent backends are skipped with a
reason. `benchmark(...)` times the dense and the compressed model interleaved and writes
`results.json`, `report.md` and a plot.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Runner": "runners",
    "OnnxRuntimeRunner": "runners",
    "TorchRunner": "runners",
    "Backend": "backends",
    "BACKENDS": "backends",
    "register_backend": "backends",
    "backend_status": "backends",
    "Comparison": "compare",
    "compare": "compare",
    "compare_outputs": "compare",
    "BenchSettings": "benchmark",
    "benchmark": "benchmark",
    "measure_model": "benchmark",
    "write_report": "report",
    "environment": "environment",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'spvit_deploy.bench' has no attribute '{name}'")
