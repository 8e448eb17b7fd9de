"""The TensorRT runner's logic with a stand-in engine and device memory: name-based I/O, buffers that
only grow, a CUDA graph for the current input shapes (replayed; dropped when shapes, profile or buffers
change), whether graphs were really used, the profile per batch, the driver check; and what happens
here, without TensorRT: the benchmark backend and the verify stage say why."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spvit_deploy.engine.build import BuildSettings, build_engine
from spvit_deploy.engine.runner import TensorRTRunner, probe
from spvit_deploy.errors import SpvitError

from engine_fakes import install


@pytest.fixture
def plan(monkeypatch, tiny_graphs, tmp_path):
    trt = install(monkeypatch)
    out = tmp_path / "m.plan"
    build_engine(tiny_graphs["fp32"], out, BuildSettings(min_batch=1, opt_batch=2, max_batch=8))
    return trt, out


def _want(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float64).mean(1)[:, None] * np.arange(1, 11)


def test_infer_graphs_and_buffers(plan) -> None:
    trt, path = plan
    r = TensorRTRunner(path, mem=trt.memory)
    assert r.input_names == ["input"] and r.output_names == ["logits"] and r.name == "tensorrt[fp32]"
    ctx = trt.engines[-1].contexts[-1]
    x4 = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    y = r.infer({"input": x4})["logits"]
    assert y.shape == (4, 10) and np.allclose(y, _want(x4), rtol=1e-5)
    assert ctx.runs == 1 and trt.memory.captures == 1  # a plain run, then a capture (records, runs nothing)
    y2 = r.infer({"input": x4[::-1].copy()})["logits"]
    assert np.allclose(y2, _want(x4[::-1]), rtol=1e-5) and trt.memory.replays == 1 and ctx.runs == 2
    allocs = trt.memory.allocs
    x2 = x4[:2].copy()
    assert np.allclose(r.infer({"input": x2})["logits"], _want(x2), rtol=1e-5)
    assert trt.memory.allocs == allocs and trt.memory.captures == 2  # smaller batch: same buffers, a new graph
    x8 = np.concatenate([x4, x4])
    assert np.allclose(r.infer({"input": x8})["logits"], _want(x8), rtol=1e-5)
    assert trt.memory.allocs > allocs  # bigger: new buffers, so the old graphs are dropped
    assert np.allclose(r.infer({"input": x2})["logits"], _want(x2), rtol=1e-5) and trt.memory.captures == 4
    with pytest.raises(SpvitError, match="outside the engine's profile"):
        r.infer({"input": np.zeros((9, 3, 64, 64), np.float32)})
    with pytest.raises(SpvitError, match="lacks engine input"):
        r.infer({"x": x2})
    r.close()


def test_capture_failure_falls_back_to_plain_launches(plan) -> None:
    trt, path = plan
    trt.memory.capture_fails = True
    r = TensorRTRunner(path, mem=trt.memory)
    x = np.ones((2, 3, 64, 64), np.float32)
    for _ in range(3):
        assert np.allclose(r.infer({"input": x})["logits"], _want(x))
    assert r.graph_failures == 1 and not r.use_graphs and trt.memory.replays == 0


def test_jit_engines_register_the_plugin_and_skip_graphs(plan, monkeypatch) -> None:
    import json

    from spvit_deploy.engine import trt_plugin
    from spvit_deploy.engine.build import sidecar_path

    trt, path = plan
    meta = json.loads(sidecar_path(path).read_text())
    meta["plugins"] = [{"name": "spvit::SpvitConvAttn", "implementation": "jit", "count": 1}]
    sidecar_path(path).write_text(json.dumps(meta))
    r = TensorRTRunner(path, mem=trt.memory)
    assert not r.use_graphs and "spvit::SpvitConvAttn" in trt.plugin.registry
    assert trt_plugin.register_plugin().jit


def test_unloadable_engine(plan, tmp_path) -> None:
    trt, _ = plan
    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(SpvitError, match="cannot load"):
        TensorRTRunner(bad, mem=trt.memory)
    with pytest.raises(SpvitError, match="does not exist"):
        TensorRTRunner(tmp_path / "none.plan", mem=trt.memory)


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_without_tensorrt_the_backend_and_stage_say_why() -> None:
    from spvit_deploy.engine.stages import tensorrt_stage
    from spvit_deploy.verification import VerifyContext

    reason = probe()
    assert reason is not None and reason.startswith("TensorRT is not installed") and "\n" not in reason
    check = tensorrt_stage(VerifyContext("deit_t", None, None, None, None))  # type: ignore[arg-type]
    assert not check.ok and math.isnan(check.max_abs_diff)
    assert check.detail == {"skipped": True, "reason": reason}


def test_graph_is_dropped_when_the_shapes_change(plan) -> None:
    """Finding 3: after the context ran batch 2, batch 4's older graph must not be replayed (the fake raises
    on a stale graph, as a GPU would silently compute garbage)."""
    trt, path = plan
    r = TensorRTRunner(path, mem=trt.memory)
    x4 = np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)
    x2 = x4[:2].copy()
    for x in (x4, x2, x4, x4):
        assert np.allclose(r.infer({"input": x})["logits"], _want(x), rtol=1e-5)
    assert trt.memory.captures == 3 and trt.memory.replays == 1  # 4, 2, 4 again (recaptured), then replayed
    r.time({"input": x2}, iters=3, warmup=1)
    assert r.graph_state["cuda_graph"] and r.graph_state["note"] == "replayed"


def test_pycuda_has_no_graph_api_and_results_say_so(plan, monkeypatch) -> None:
    """Finding 3: pycuda has no stream capture; without cuda-python the runner times plain launches and says so."""
    import sys
    import types

    from spvit_deploy.engine import runner as runner_mod

    drv = types.ModuleType("pycuda.driver")
    drv.Stream = type("Stream", (), {"handle": 5, "synchronize": lambda self: None})  # no begin_capture
    pkg = types.ModuleType("pycuda")
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", types.ModuleType("pycuda.autoinit"))
    monkeypatch.setattr(runner_mod, "_cuda_driver_api", lambda: None)
    mem = runner_mod.PyCudaMemory()
    assert mem.graphs is None
    trt, path = plan
    fake = trt.memory
    fake.graphs = None  # the fake device memory, with pycuda's (missing) graph support
    r = TensorRTRunner(path, mem=fake)
    times = r.time({"input": np.ones((2, 3, 64, 64), np.float32)}, iters=3, warmup=1)
    assert len(times) == 3 and fake.captures == 0 and not r.use_graphs
    assert r.graph_state["cuda_graph"] is False and "no CUDA graph API" in r.graph_state["note"]


def test_each_batch_runs_in_its_own_profile(monkeypatch, tiny_graphs, tmp_path) -> None:
    """Finding 4: with one profile per timed batch, batch 8 runs in the profile tuned for 8."""
    trt = install(monkeypatch)
    out = tmp_path / "m.plan"
    build_engine(tiny_graphs["fp32"], out, BuildSettings(min_batch=1, max_batch=8, opt_batches=(1, 8)))
    r = TensorRTRunner(out, mem=trt.memory)
    ctx = trt.engines[-1].contexts[-1]
    for b in (8, 1, 8, 3):
        x = np.ones((b, 3, 64, 64), np.float32)
        assert np.allclose(r.infer({"input": x})["logits"], _want(x))
    assert ctx.profile_runs == [1, 0, 1, 0]  # 3 has no profile of its own: the first that holds it
    r.time({"input": np.ones((8, 3, 64, 64), np.float32)}, iters=2, warmup=1)
    assert r.graph_state["profile_batches"] == {"min": 1, "opt": 8, "max": 8}


def test_benchmark_runner_builds_for_any_batch(monkeypatch, tiny_graphs, tmp_path) -> None:
    """Finding 8: the benchmark's TensorRT engine is not capped at batch 64."""
    import shutil

    from spvit_deploy.engine.build import read_sidecar
    from spvit_deploy.engine.runner import make_runner

    trt = install(monkeypatch)
    onnx = tmp_path / "m.onnx"
    shutil.copy(tiny_graphs["fp32"], onnx)
    r = make_runner(str(onnx), settings=BuildSettings(timing_cache=str(tmp_path / "tc")))
    monkeypatch.setattr("spvit_deploy.engine.runner.device_memory", lambda kind="auto": trt.memory)
    x = np.ones((80, 3, 64, 64), np.float32)
    assert np.allclose(r.infer({"input": x})["logits"], _want(x))
    assert read_sidecar(tmp_path / "m.fp32.b80.plan")["profile"] == {"min": 1, "opt": 80, "max": 80}
    r.close()


def test_engine_with_newer_ptx_than_the_driver_is_refused(plan, monkeypatch) -> None:
    import json

    from spvit_deploy.engine import device
    from spvit_deploy.engine.build import sidecar_path

    trt, path = plan
    meta = json.loads(sidecar_path(path).read_text())
    meta["plugins"] = [{"name": "spvit::SpvitConvAttn", "implementation": "aot", "count": 1, "ptx_versions": ["8.8"]}]
    sidecar_path(path).write_text(json.dumps(meta))
    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo("550.54", (12, 4), "fake"))
    with pytest.raises(SpvitError, match=r"PTX 8.8 .* loads up to 8.4; update the driver or rebuild") as e:
        TensorRTRunner(path, mem=trt.memory)
    assert "\n" not in str(e.value)
