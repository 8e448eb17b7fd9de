"""The non-GPU logic of benchmarks/kernels/bench_conv_block.py with fake timings:
FLOP/byte counting, peak lookup, roofline fraction, report files, the no-GPU exit."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels" / "bench_conv_block.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_conv_block", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def test_cost_counts_gemm_flops_and_compulsory_bytes(bench) -> None:
    shape = bench.Shape("deit_b", 1, 768, 64, 3, (14, 14))
    flops, nbytes = bench.cost(shape, elem_bytes=2)
    assert flops == 2 * 196 * (768 * 64 * 9 + 64 * 768)
    weights = 768 * 64 * 9 + 64 + 64 * 768 + 768 + 2 * 768
    assert nbytes == 2 * (2 * 197 * 768 + weights)


@pytest.mark.parametrize("name,tflops,gbps", [
    ("NVIDIA H100 80GB HBM3", 989.4, 3350.0), ("NVIDIA H100 PCIe", 756.0, 2000.0),
    ("NVIDIA A100-SXM4-80GB", 312.0, 2039.0), ("NVIDIA A100-PCIE-40GB", 312.0, 1555.0),
])
def test_peak_table(bench, name: str, tflops: float, gbps: float) -> None:
    assert bench.peak_for(name) == bench.Peak(tflops, gbps)


def test_unknown_gpu_has_no_floor(bench) -> None:
    shape = bench.Shape("deit_ti", 8, 192, 64, 1, (14, 14))
    assert bench.peak_for("NVIDIA GeForce RTX 4090") is None
    assert bench.summarize(shape, "eager", [1.0, 2.0, 3.0], 2, None)["floor_fraction"] is None


def test_summary_and_report_from_fake_timings(bench, tmp_path: Path) -> None:
    shape = bench.Shape("deit_b", 64, 768, 64, 3, (14, 14))
    peak = bench.Peak(1000.0, 2000.0)
    flops, nbytes = bench.cost(shape, 2)
    fused = bench.summarize(shape, "fused_block", [0.3, 0.1, 0.2], 2, peak, max_abs_err=1e-3)
    eager = bench.summarize(shape, "eager", [0.4, 0.4, 0.5], 2, peak)
    assert fused["median_us"] == pytest.approx(200.0)
    assert fused["tflops"] == pytest.approx(flops / 200e-6 / 1e12)
    floor = max(flops / 1e15, nbytes / 2e12)
    assert fused["floor_fraction"] == pytest.approx(floor / 200e-6)
    bench.write_report(tmp_path, {"gpu": "fake GPU", "torch": "x"}, [eager, fused])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["environment"]["gpu"] == "fake GPU" and len(data["rows"]) == 2
    report = (tmp_path / "report.md").read_text()
    assert "| deit_b | 3 | 64 | fused_block | 200.0 | 2.00x |" in report


def test_exits_cleanly_without_a_gpu(bench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: False)
    assert bench.main(["--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["bench_conv_block: needs an NVIDIA GPU (torch.cuda.is_available() is False)"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_script_runs_as_one_command_without_a_gpu() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", "unused"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "needs an NVIDIA GPU" in proc.stderr and "Traceback" not in proc.stderr
