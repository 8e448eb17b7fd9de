"""`spvit-deploy benchmark` end to end on a CPU-sized model (few iterations; no timing asserted)."""
from __future__ import annotations

import json

import pytest

from spvit_deploy.cli import main

from bench_testing import NANO, nano_spec


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    import contextlib
    import io

    d = tmp_path_factory.mktemp("bench")
    nano_spec().save(d / "arch.json")
    out = d / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["benchmark", "--model", NANO, "--arch", str(d / "arch.json"), "--backends",
                   "onnxruntime,torch,tensorrt", "--batch", "1,2", "--iters", "3", "--warmup", "1", "--rounds", "2",
                   "--threads", "1", "--profile", "--out", str(out), "--json"])
    return rc, json.loads(buf.getvalue()), out


def test_json_shape(bench_run):
    rc, printed, _ = bench_run
    assert rc == 0
    rows = printed["speedups"]
    assert {(r["backend"], r["batch"]) for r in rows} == {(b, n) for b in ("onnxruntime", "torch") for n in (1, 2)}
    for r in rows:
        assert isinstance(r["backend"], str) and isinstance(r["batch"], int) and isinstance(r["p50_speedup"], float)
        assert r["p50_speedup"] > 0
    assert [s["backend"] for s in printed["skipped"]] == ["tensorrt"] and printed["skipped"][0]["reason"]


def test_files(bench_run):
    _, _, out = bench_run
    res = json.loads((out / "results.json").read_text())
    env = res["environment"]
    assert env["cpu_model"] and env["threads"] == 1 and env["versions"]["onnxruntime"] and env["date_utc"]
    (sec,) = res["models"]
    assert sec["macs_ratio"] > 1 and sec["random_weights"] == {"dense": True, "compressed": True}
    for row in sec["rows"]:
        assert row["iters"] == 3 and row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
        assert row["throughput_ips"] > 0 and row["peak_rss_mib"] > row["rss_before_load_mib"] > 0
        assert row["other_cpu_pct"] >= 0
    # torch vs ONNX Runtime outputs for the same model agree
    assert sec["agreement"] and all(a["max_abs_diff"] <= 1e-4 for a in sec["agreement"])
    md = (out / "report.md").read_text()
    assert "p50 speedup" in md and "Skipped tensorrt" in md and res["environment"]["cpu_model"] in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --profile: both graphs profiled per batch size, linear-layer MACs in the ratio of the model's
    assert [p["batch"] for p in sec["profiles"]] == [1, 2] and "Where the time goes at batch 2" in md
    for p in sec["profiles"]:
        lin = {v: g["categories"]["linear"]["macs"] for v, g in p["graphs"].items()}
        assert lin["dense"] > lin["compressed"] > 0 and p["graphs"]["dense"]["runs"] == 3


@pytest.mark.parametrize("args, needle", [
    (["--backends", "nope"], "unknown backend"),
    (["--batch", "0,2"], "--batch"),
    (["--backends", "torch", "--profile"], "--profile reads ONNX Runtime's profiler"),
    (["--batch", "1,x"], "--batch"),
    (["--iters", "0"], "--iters"),
    (["--threads", "0"], "--threads"),
])
def test_bad_input_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert main(["benchmark", "--model", "deit_t", "--arch", "paper:deit_tiny", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_graph_ablation_report(tmp_path):
    """compare_graphs: two graphs of one model, interleaved; rendered as its own report section."""
    from spvit_deploy.bench.harness import BenchSettings, compare_graphs
    from spvit_deploy.bench.report import write_report
    from spvit_deploy.export.onnx import export_onnx
    from spvit_deploy.export.source import load_export_model

    em = load_export_model(model=NANO, arch=nano_spec())
    export_onnx(em.module, tmp_path / "a.onnx", spec=em.spec, check_batches=())
    export_onnx(em.module, tmp_path / "b.onnx", spec=em.spec, check_batches=(), pad_widths=64)
    settings = BenchSettings(batches=(1,), iters=2, warmup=0, rounds=1, threads=1)
    ab = compare_graphs({"plain": tmp_path / "a.onnx", "padded": tmp_path / "b.onnx"}, settings, (3, 32, 32), "t")
    assert [r["graph"] for r in ab["rows"]] == ["plain", "padded"] and ab["rows"][0]["p50_speedup_vs_first"] == 1.0
    assert ab["runtime_op_counts"]["plain"]["MatMul"] > 0
    res = write_report([], settings, tmp_path / "out", ablations=[ab])
    assert res["ablations"][0]["title"] == "t" and "| 1 | padded |" in (tmp_path / "out" / "report.md").read_text()
