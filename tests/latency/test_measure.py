"""Speedup measurements are the median of independent sessions: a session where one process lands badly
(a shared VM does this now and then) does not move the result."""
from __future__ import annotations

import importlib

import pytest

from spvit_deploy.bench.settings import BenchSettings
from spvit_deploy.latency.measure import session_speedup


def test_the_median_session_is_reported_and_outlier_sessions_do_not_move_it(monkeypatch) -> None:
    bench = importlib.import_module("spvit_deploy.bench.harness")
    ratios = iter([1.50, 1.28, 1.49, 1.73, 1.52])  # two sessions 15% off: one each way
    seen = []

    def fake_time(backend, paths, batch, input_shape, settings):
        seen.append((settings.iters, settings.rounds, settings.block))
        r = next(ratios)
        n = settings.iters
        return {"dense": {"p50_ms": 3.0 * r, "times_ms": [3.0 * r] * n, "other_cpu_pct": 0.0},
                "candidate": {"p50_ms": 3.0, "times_ms": [3.0] * n, "other_cpu_pct": 2.5}}, {}

    monkeypatch.setattr(bench, "time_interleaved", fake_time)
    s = BenchSettings(backends=("onnxruntime",), batches=(16,), iters=60, rounds=20)
    m = session_speedup("onnxruntime", {"dense": "d", "candidate": "c"}, 16, (3, 32, 32), s, 5, other="candidate")
    assert seen == [(12, 4, 3)] * 5  # the iterations and rounds split between the sessions
    assert m["speedup"] == pytest.approx(1.50) and m["session_speedups"] == [1.5, 1.28, 1.49, 1.73, 1.52]
    assert m["ms"] == pytest.approx(3.0) and m["dense_ms"] == pytest.approx(4.5) and m["other_cpu_pct"] == 2.5
    one = iter([1.28])
    monkeypatch.setattr(bench, "time_interleaved", lambda *a: ({"dense": {"p50_ms": 3.84, "times_ms": [3.84] * 60},
                                                                "candidate": {"p50_ms": 3.0, "times_ms": [3.0] * 60}}, {})
                        if next(one) else None)
    assert session_speedup("onnxruntime", {"dense": "d", "candidate": "c"}, 16, (3, 32, 32), s, 1,
                           other="candidate")["speedup"] == pytest.approx(1.28)  # one session: what it measured


def test_the_dense_graph_is_exported_once_per_model_for_every_candidate(monkeypatch, tmp_path) -> None:
    """A calibration times up to four candidates against the same dense model: its graph is made once."""
    import json

    from spvit_deploy.latency.measure import measure_speedup
    from spvit_deploy.latency.table import load_lut
    from spvit_deploy.spec import ArchSpec, BlockSpec

    from latency_testing import NANO, fake_lut_dict

    prof = importlib.import_module("spvit_deploy.latency.profile")
    meas = importlib.import_module("spvit_deploy.latency.measure")
    bench = importlib.import_module("spvit_deploy.bench.harness")
    made = []

    def fake_build(name, dims, configs, backend, tmp, seed, say, dense=True, prefix=""):
        labels = [k for k, _ in configs] + (["dense"] if dense else [])
        made.append(labels)
        return {k: str(tmp / f"{prefix}{k}.onnx") for k in labels}

    def fake_time(backend, paths, batch, input_shape, settings):
        assert set(paths) == {"dense", "candidate"} and paths["dense"].endswith("dense.onnx")
        return {"dense": {"p50_ms": 3.0, "times_ms": [3.0] * settings.iters},
                "candidate": {"p50_ms": 2.0, "times_ms": [2.0] * settings.iters}}, {}

    monkeypatch.setattr(prof, "build_graphs", fake_build)
    monkeypatch.setattr(bench, "time_interleaved", fake_time)
    monkeypatch.setattr(meas, "_DENSE_GRAPHS", {})
    p = tmp_path / "lut.json"
    p.write_text(json.dumps(fake_lut_dict((16,))))
    lut = load_lut(p)
    for op in ("skip", "conv1x1", "skip"):
        spec = ArchSpec(model=NANO, img_size=32, num_classes=10, source="t",
                        blocks=tuple(BlockSpec(op, tuple(range(64))) for _ in range(6)))
        assert measure_speedup(spec, lut, 16)["speedup"] == pytest.approx(1.5)
    assert made == [["dense"], ["candidate"], ["candidate"], ["candidate"]]
