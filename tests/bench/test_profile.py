"""ONNX Runtime's profile summed per kind of op: categories and MAC counts on a graph with known shapes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spvit_deploy.bench.profile import CATEGORIES, categorize, ort_op_profile
from spvit_deploy.bench.report import render_profile


def _graph(path):
    """x (B, 3, 4, 4) -> Reshape (B, 6, 8) -> MatMul (8x5) + bias -> LayerNorm -> Softmax."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array([0, 6, 8], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b"),
             numpy_helper.from_array(np.ones(5, np.float32), "g"), numpy_helper.from_array(np.zeros(5, np.float32), "beta")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["t"]), helper.make_node("MatMul", ["t", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("LayerNormalization", ["a", "g", "beta"], ["n"], axis=-1),
             helper.make_node("Softmax", ["n"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def test_profile_categories_and_macs(tmp_path):
    _graph(tmp_path / "g.onnx")
    prof = ort_op_profile(tmp_path / "g.onnx", batch=3, input_shape=(3, 4, 4), threads=1, runs=2)
    cats = prof["categories"]
    assert prof["runs"] == 2 and set(cats) == {k for _, k in CATEGORIES}
    assert cats["linear"]["macs"] == 3 * 6 * 5 * 8  # output elements x reduction length, per run
    assert cats["linear"]["ms"] > 0 and cats["norm"]["ms"] > 0 and cats["softmax"]["ms"] > 0
    assert cats["attention"]["ms"] == 0 and cats["conv"]["ms"] == 0


def test_render_profile_ratios():
    def prof(linear_ms, add_ms):
        cats = {k: {"ms": 0.0, "macs": 0} for _, k in CATEGORIES}
        cats["linear"] = {"ms": linear_ms, "macs": 1e9 * linear_ms / 1e3 * 100}  # 100 GMAC/s
        cats["add"]["ms"] = add_ms
        return {"runs": 3, "run_ms": linear_ms + add_ms, "categories": cats}

    lines = render_profile({"batch": 16, "graphs": {"dense": prof(200.0, 10.0), "compressed": prof(100.0, 10.0)}})
    text = "\n".join(lines)
    assert "| linear layers (MatMul, Gemm) | 200.0 | 100.0 | 2.00x | 100 / 100 |" in text
    assert "| bias and residual Adds | 10.0 | 10.0 | 1.00x |  |" in text
    assert "| all kernels | 210.0 | 110.0 | 1.91x |  |" in text
    assert "Softmax" not in text  # categories with no time are left out


def test_categorize_attention_by_rank():
    assert categorize("MatMul", [[2, 12, 197, 64], [2, 12, 64, 197]]) == "attention"
    assert categorize("FusedMatMul", [[2, 197, 768], [768, 768]]) == "linear"
    assert categorize("SkipLayerNormalization", []) == "norm"
    assert categorize("BiasGelu", []) == "gelu"
    assert categorize("ReorderInput", []) == "layout"
