"""fp16 conversion: the graph checks the builder relies on (no fp16 LayerNorm/Softmax, fp32 classifier,
one Cast per precision boundary, dynamic batch), and fp16 vs fp32 through onnx.reference on real images."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spvit_deploy.comparison import compare
from spvit_deploy.passes.checks import check_graph, run_reference
from spvit_deploy.passes.fp16 import convert_to_fp16, graph_precision
from spvit_deploy.onnx_io import get_metadata
from spvit_deploy.engine.samples import demo_samples
from spvit_deploy.errors import SpvitError

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT


def _types(model: onnx.ModelProto) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def test_sensitive_ops_classifier_and_io_stay_fp32(tiny_graphs) -> None:
    m = onnx.load(str(tiny_graphs["fp16"]))
    types = _types(m)
    nodes = list(m.graph.node)
    for n in nodes:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert all(types[i] == F32 for i in n.input if i), n.name  # X, Scale and B all fp32
            assert types[n.output[0]] == F32
        if n.op_type in ("MatMul", "Conv"):
            assert types[n.input[0]] == F16 and types[n.input[1]] == F16, n.name
    head = [n for n in nodes if n.op_type == "Gemm"]
    assert len(head) == 1 and all(types[i] == F32 for i in head[0].input)  # the classifier, weights included
    assert [types[v.name] for v in (*m.graph.input, *m.graph.output)] == [F32, F32]
    checks = check_graph(m)
    assert checks.fp16_sensitive_ops == [] and checks.batch_dynamic and graph_precision(m) == "fp16"
    assert get_metadata(m)["precision"] == "fp16" and get_metadata(m)["spec"]["model"]  # export metadata kept


def test_casts_only_at_boundaries_once_per_tensor(tiny_graphs) -> None:
    m = onnx.load(str(tiny_graphs["fp16"]))
    types = _types(m)
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    keys = Counter((n.input[0], helper.get_attribute_value(n.attribute[0])) for n in casts)
    assert max(keys.values()) == 1  # one Cast per (tensor, target type)
    produced_by_cast = {n.output[0] for n in casts}
    for n in casts:
        to = helper.get_attribute_value(n.attribute[0])
        assert types[n.input[0]] != to  # a real precision change
        assert n.input[0] not in produced_by_cast  # no Cast -> Cast chains
    ln = sum(1 for n in m.graph.node if n.op_type == "LayerNormalization")
    sm = sum(1 for n in m.graph.node if n.op_type == "Softmax")
    # into and out of every LayerNorm/Softmax island, plus the graph input; the last LayerNorm feeds
    # the fp32 classifier directly
    assert len(casts) <= 2 * (ln + sm) + 1


@pytest.mark.parametrize("graph", ["fp16", "fp16_plugins"])
def test_fp16_matches_fp32_on_real_images(tiny_graphs, graph: str) -> None:
    x, _ = demo_samples(20, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    ref = run_reference(onnx.load(str(tiny_graphs["fp32"])), x)
    c = compare(ref, run_reference(onnx.load(str(tiny_graphs[graph])), x))
    assert c.cosine >= 0.999 and c.top1_agreement == 1.0, c


def _decomposed_layernorm_model() -> onnx.ModelProto:
    """x -> MatMul -> LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add -> MatMul + Add (head)."""
    rng = np.random.default_rng(0)
    c, k = 8, 5
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in {
        "w0": rng.standard_normal((c, c)), "two": np.array(2.0), "eps": np.array(1e-5),
        "gamma": 1 + 0.1 * rng.standard_normal(c), "beta": 0.1 * rng.standard_normal(c),
        "wh": rng.standard_normal((c, k)), "bh": rng.standard_normal(k)}.items()]
    nodes = [
        helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("Mul", ["x", "scale"], ["xs"]),
        helper.make_node("MatMul", ["xs", "w0"], ["h"]),
        helper.make_node("ReduceMean", ["h"], ["mean"], axes=[-1]),
        helper.make_node("Sub", ["h", "mean"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["std"]),
        helper.make_node("Div", ["d", "std"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["g"]),
        helper.make_node("Add", ["g", "beta"], ["y"]),
        helper.make_node("MatMul", ["y", "wh"], ["z"]),
        helper.make_node("Add", ["z", "bh"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", F32, ["batch", c])],
                              [helper.make_tensor_value_info("logits", F32, ["batch", k])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_decomposed_layernorm_and_matmul_head_stay_fp32() -> None:
    model = _decomposed_layernorm_model()
    out, report = convert_to_fp16(model)
    types = _types(out)
    by_out = {n.output[0]: n for n in out.graph.node}
    for name in ("mean", "d", "sq", "var", "ve", "std", "n", "g", "y", "z", "logits"):
        assert types[name] == F32, name
    assert types["h"] == types["xs"] == F16  # the first Mul (its Constant node converted) and MatMul are fp16
    assert "Constant" not in {n.op_type for n in out.graph.node}
    assert report.classifier == [by_out["logits"].name, by_out["z"].name]
    assert sum(1 for n in out.graph.node if n.op_type == "Cast") == 2  # x -> fp16, h -> fp32
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    c = compare(run_reference(model, x), run_reference(out, x))
    assert c.cosine > 0.9999


def test_a_plugin_graph_converts_like_the_plain_one(tiny_graphs) -> None:
    """`export --plugins` then `build-engine --fp16`: the plugin node becomes fp16 like the conv blocks."""
    conv, _ = convert_to_fp16(onnx.load(str(tiny_graphs["plugins"])))
    inits = {t.name: t.data_type for t in conv.graph.initializer}
    plug = [n for n in conv.graph.node if n.op_type == "SpvitConvAttn"]
    assert len(plug) == 6 and all(inits[i] == F16 for n in plug for i in n.input[1:])
    x = np.random.default_rng(2).standard_normal((3, 3, 64, 64)).astype(np.float32)
    a = run_reference(onnx.load(str(tiny_graphs["fp16_plugins"])), x)
    assert np.abs(run_reference(conv, x) - a).max() <= 1e-3 * np.abs(a).max()


def test_fp16_io_and_refusals(tiny_graphs) -> None:
    fp32 = onnx.load(str(tiny_graphs["fp32"]))
    half, rep = convert_to_fp16(fp32, keep_io_fp32=False)
    assert [v.type.tensor_type.elem_type for v in (*half.graph.input, *half.graph.output)] == [F16, F16]
    assert rep.io_dtype == "float16" and rep.clipped_values == 0
    with pytest.raises(SpvitError, match="already holds fp16"):
        convert_to_fp16(onnx.load(str(tiny_graphs["fp16"])))
