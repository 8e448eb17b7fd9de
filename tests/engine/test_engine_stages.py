"""`verify --stages onnx-plugin,onnx-fp16,tensorrt` end to end on CPU: the two graph stages pass,
the TensorRT stage is reported not ok with the reason (never a silent pass)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from spvit_deploy.cli import main

from spvit_testing import TINY, TINY_IMG, random_spec


@pytest.mark.slow
def test_verify_graph_stages(tmp_path, capsys) -> None:
    spec = random_spec(TINY, 12, 768, ["conv3x3", "msa", "conv1x1"], TINY_IMG, num_classes=10)
    spec.save(tmp_path / "arch.json")
    rc = main(["verify", "--model", "deit_t", "--arch", str(tmp_path / "arch.json"),
               "--stages", "onnx-plugin,onnx-fp16,tensorrt", "--json"])
    report = json.loads(capsys.readouterr().out)
    checks = {c["stage"]: c for c in report["checks"]}
    plugin, fp16, trt = checks["onnx-plugin"], checks["onnx-fp16"], checks["tensorrt"]
    assert plugin["ok"] and plugin["max_abs_diff"] <= 1e-4 and plugin["detail"]["plugin_nodes"] == 8
    for graph in ("fp16", "fp16+plugins"):
        d = fp16["detail"][graph]
        assert d["ok"] and d["cosine"] >= 0.999 and d["top5_overlap"] >= 0.9 and d["fp16_sensitive_ops"] == []
    if importlib.util.find_spec("tensorrt") is None:
        assert rc == 1 and not report["ok"] and not trt["ok"] and trt["detail"]["skipped"]
        assert "TensorRT is not installed" in trt["detail"]["reason"]
    else:  # an NVIDIA machine: the engine must agree with ONNX Runtime
        assert rc == 0 and report["ok"] and trt["ok"], trt


def test_export_cli_fp16_and_plugins(tiny_graphs, tmp_path, capsys) -> None:
    """`spvit-deploy export --fp16 --plugins`: the graph build-engine would build, checked like it against
    the shared fp32 export of the same model, spec and (seed-0 random) weights."""
    import numpy as np
    import onnx

    from spvit_deploy.comparison import compare
    from spvit_deploy.passes.checks import check_graph, run_reference
    from spvit_deploy.engine.stages import topk_overlap

    spec = random_spec(TINY, 12, 768, ["conv3x3", "conv1x1", "skip", "msa"], TINY_IMG, num_classes=10,
                       empty_ffn_block=5)  # tiny_graphs' spec
    spec.save(tmp_path / "arch.json")
    common = ["export", "--model", "deit_t", "--arch", str(tmp_path / "arch.json")]
    assert main([*common, "--fp16", "--plugins", "--out", str(tmp_path / "trt.onnx"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["path"] == str(tmp_path / "trt.onnx") and rep["op_counts"]["SpvitConvAttn"] == 6
    assert rep["metadata"]["engine_passes"]["plugins"]["count"] == 6
    graph = onnx.load(str(tmp_path / "trt.onnx"))
    checks = check_graph(graph)
    assert checks.ok and checks.plugin_nodes == checks.conv_blocks == 6 and not checks.fp16_sensitive_ops
    x = np.random.default_rng(0).standard_normal((4, 3, TINY_IMG, TINY_IMG)).astype(np.float32)
    ref, got = run_reference(onnx.load(str(tiny_graphs["fp32"])), x), run_reference(graph, x)
    assert compare(ref, got).cosine >= 0.999 and topk_overlap(ref, got) >= 0.9  # top-1 of random weights: no verdict
