"""benchmarks/gpu/run_trt.py without a GPU: its pure logic (latency rows, one profile per timed batch,
the fair baseline, speedups, goals, parity, Markdown) and the one-line exit when TensorRT is missing;
benchmarks/gpu/acceptance.py: --dry-run here, and the one-line refusal without a GPU."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "run_trt.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("run_trt", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(bench):
    ms = {("dense-fp16", 1): 2.0, ("compressed-fp16", 1): 1.6, ("compressed-fp16-plugins", 1): 1.25,
          ("dense-fp16", 64): 40.0, ("compressed-fp16", 64): 25.0, ("compressed-fp16-plugins", 64): 23.0}
    return [bench.latency_row("deit_b", e, b, [t / 1e3] * 9 + [2 * t / 1e3]) for (e, b), t in ms.items()]


def test_speedups_and_goals(bench) -> None:
    rows = _rows(bench)
    assert rows[0]["p50_ms"] == pytest.approx(2.0) and rows[0]["p99_ms"] == pytest.approx(4.0)
    assert rows[0]["throughput_ips"] == pytest.approx(1e3 / 2.2)
    sp = bench.speedups(rows)
    plug64 = next(s for s in sp if s["batch"] == 64 and s["engine"] == "compressed-fp16-plugins")
    assert plug64["vs_dense"] == pytest.approx(40 / 23, rel=1e-3) and plug64["vs_no_plugins"] == pytest.approx(25 / 23, rel=1e-3)
    goals = {g["batch"]: g for g in bench.goal_checks(sp)}
    assert goals[64]["met"] is False and goals[64]["speedup"] == pytest.approx(40 / 23, rel=1e-3)
    assert goals[1]["met"] is True and goals[1]["speedup"] == pytest.approx(1.6)
    assert bench.goal_checks([])[0]["met"] is None


def test_markdown_from_results(bench) -> None:
    rows = _rows(bench)
    sp = bench.speedups(rows)
    results = {"environment": {"gpu": "NVIDIA H100", "cc": 90, "tensorrt": "10.13", "date_utc": "x"},
               "weights": "random", "settings": {"iters": 10, "warmup": 1}, "latency": rows, "speedups": sp,
               "goals": bench.goal_checks(sp),
               "parity": [{"model": "deit_b", "engine": "dense-fp16", "max_abs_diff": 0.01, "cosine": 0.9999,
                           "top1_agreement": 1.0, "top5_overlap": 0.98, "ok": True}],
               "engines": [{"model": "deit_b", "engine": "compressed-fp16-plugins", "build_seconds": 50,
                            "plugins": [{"count": 8, "implementation": "aot"}], "precision": "fp16"}]}
    md = bench.render_markdown(results)
    assert "| deit_b | 64 | >= 1.8x | 1.74x | **no** |" in md and "| deit_b | 1 | >= 1.4x | 1.60x | yes |" in md
    assert "8 x aot" in md and "NVIDIA H100 (sm_90)" in md


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_without_tensorrt_exits_2_with_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("run_trt: error: TensorRT is not installed") and not (tmp_path / "r").exists()


@pytest.mark.parametrize("batches", [[1, 16, 64], [1, 8], [4], [2, 128]])
def test_one_profile_per_timed_batch_for_any_batches(bench, batches) -> None:
    """Finding 4: TensorRT tunes at each batch we time; any --batches list builds (opt 16 with max 8 did not)."""
    s = bench.engine_settings(batches, plugins=True, timing_cache="tc")
    assert [p["opt"] for p in s.profiles] == sorted(batches)
    assert s.min_batch == 1 and s.max_batch == max(batches) and s.detailed_profile


def test_dense_baseline_is_the_fastest_passing_configuration(bench) -> None:
    """Finding 5: fp16 Softmax lets TensorRT fuse the dense attention; the faster correct one is the baseline."""
    ms = {("dense-fp16", 64): 40.0, ("dense-fp16-softmax16", 64): 30.0, ("compressed-fp16", 64): 25.0,
          ("compressed-fp16-softmax16", 64): 24.0}
    rows = [bench.latency_row("deit_b", e, b, [t / 1e3] * 5) for (e, b), t in ms.items()]
    sp = {s["engine"]: s for s in bench.speedups(rows)}
    assert sp["compressed-fp16"]["vs_dense"] == pytest.approx(30 / 25) and sp["compressed-fp16"]["dense_engine"] == \
        "dense-fp16-softmax16"
    ok = {("deit_b", "dense-fp16"), ("deit_b", "compressed-fp16"), ("deit_b", "compressed-fp16-softmax16")}
    assert {s["engine"]: s for s in bench.speedups(rows, ok)}["compressed-fp16"]["vs_dense"] == pytest.approx(40 / 25)
    (b,) = bench.baselines(rows, ok)
    assert (b["dense"], b["compressed"]) == ("dense-fp16", "compressed-fp16-softmax16")
    assert b["dense_candidates"] == {"dense-fp16": 40.0, "dense-fp16-softmax16": 30.0}


def test_parity_is_cosine_and_top5_not_a_flaky_top1(bench) -> None:
    import numpy as np

    ref = np.random.default_rng(0).standard_normal((32, 10))
    near = ref + 1e-4 * np.random.default_rng(1).standard_normal(ref.shape)
    from spvit_deploy.engine.stages import topk_overlap

    assert topk_overlap(ref, ref) == 1.0 and topk_overlap(ref, near) > 0.9 and topk_overlap(ref, -ref) == 0.0
    assert bench.parity_ok({"cosine": 0.9999, "top5_overlap": 0.96, "top1_agreement": 0.8})  # top-1 flips: fine
    assert not bench.parity_ok({"cosine": 0.99, "top5_overlap": 1.0, "top1_agreement": 1.0})


ACCEPTANCE = SCRIPT.with_name("acceptance.py")


def test_acceptance_dry_run_says_what_it_would_do(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(ACCEPTANCE), "--dry-run", "--out", str(tmp_path / "acc")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for step in ("kernel tests", "kernel benchmark", "run_trt.py", "--batches 1,16,64", "deit_b,swin_t,deit_s,deit_t",
                 "tritonserver", "environment.json"):
        assert step in out, step
    assert not (tmp_path / "acc").exists()  # a dry run writes nothing


@pytest.mark.skipif(__import__("shutil").which("nvidia-smi") is not None, reason="an NVIDIA GPU may be here")
def test_acceptance_without_a_gpu_is_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, str(ACCEPTANCE), "--out", str(tmp_path / "acc")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("acceptance: error: ") and "GPU" in proc.stderr
    assert not (tmp_path / "acc").exists()
