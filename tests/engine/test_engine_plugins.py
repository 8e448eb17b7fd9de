"""The plugin pass: one SpvitConvAttn node per conv block with the kernel's inputs and layout, and the
plugin graph (numpy reference op in onnx.reference) equal to the plain graph within 1e-4 (fp32)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from spvit_deploy.passes.checks import check_graph, run_reference
from spvit_deploy.onnx_io import get_metadata
from spvit_deploy.passes.plugins import (PLUGIN_DOMAIN, PLUGIN_OP, conv_attn_numpy,
                                         insert_conv_attn_plugins, pack_conv_weight)
from spvit_deploy.engine.samples import demo_images
from spvit_deploy.errors import SpvitError
from spvit_kernels import conv_attn_reference


def test_one_plugin_node_per_conv_block(tiny_graphs) -> None:
    m = onnx.load(str(tiny_graphs["plugins"]))
    spec = get_metadata(m)["spec"]
    kernels = [{"conv3x3": 3, "conv1x1": 1}[b["attn"]] for b in spec["blocks"] if b["attn"].startswith("conv")]
    nodes = [n for n in m.graph.node if n.op_type == PLUGIN_OP]
    assert len(nodes) == len(kernels) == 6
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    for n, k in zip(nodes, kernels):
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        assert n.domain == PLUGIN_DOMAIN
        assert attrs == {"plugin_namespace": b"spvit", "plugin_version": b"1", "kernel_size": k, "grid_h": 4, "grid_w": 4,
                         "aot": 1}  # TensorRT's ONNX parser: use the AOT implementation, whoever builds
        assert [inits[i].shape for i in n.input[1:]] == [(k, k, 192, 64), (64,), (192, 64), (192,)]
    assert [n.op_type for n in m.graph.node].count("Conv") == 1  # only the patch embedding is left
    assert "Relu" not in {n.op_type for n in m.graph.node}  # 1x1 blocks (exported as Linear) replaced too
    assert any(o.domain == PLUGIN_DOMAIN for o in m.opset_import)
    checks = check_graph(m)
    assert checks.plugin_nodes == checks.conv_blocks == 6 and checks.batch_dynamic and checks.ok
    assert get_metadata(m)["plugins"]["count"] == 6


@pytest.mark.parametrize("batch", [1, 3])
def test_plugin_graph_matches_plain_graph(tiny_graphs, batch: int) -> None:
    x = np.concatenate([demo_images(batch, 64), np.random.default_rng(batch).standard_normal((batch, 3, 64, 64))
                        ]).astype(np.float32)
    plain = run_reference(onnx.load(str(tiny_graphs["fp32"])), x)
    plug = run_reference(onnx.load(str(tiny_graphs["plugins"])), x)
    assert plug.shape == (2 * batch, 10)
    assert np.abs(plug.astype(np.float64) - plain).max() <= 1e-4


def test_fp16_plugin_nodes_take_fp16(tiny_graphs) -> None:
    m = onnx.load(str(tiny_graphs["fp16_plugins"]))
    inits = {t.name: t.data_type for t in m.graph.initializer}
    nodes = [n for n in m.graph.node if n.op_type == PLUGIN_OP]
    assert len(nodes) == 6
    assert all(inits[i] == onnx.TensorProto.FLOAT16 for n in nodes for i in n.input[1:])
    assert check_graph(m).fp16_sensitive_ops == []


@pytest.mark.parametrize("layout", ["tokens", "map"])
@pytest.mark.parametrize("ks,grid", [(3, (3, 5)), (1, (2, 2)), (3, (1, 4))])
def test_the_reference_op_is_the_oracle_on_packed_weights(ks: int, grid: tuple[int, int], layout: str) -> None:
    """`conv_attn_numpy` only unpacks the node's inputs for `conv_attn_reference` (one oracle, no second
    reference): fp32 equal to it, class-token tokens and maps alike; fp16 rounds like the kernel."""
    g = torch.Generator().manual_seed(ks)
    c, d = 24, 8
    shape = (2, 1 + grid[0] * grid[1], c) if layout == "tokens" else (2, *grid, c)
    u = torch.randn(*shape, generator=g)
    w, b = torch.randn(d, c, ks, ks, generator=g), torch.randn(d, generator=g)
    pw, pb = torch.randn(c, d, generator=g), torch.randn(c, generator=g)
    want = conv_attn_reference(u, w, b, pw, pb, grid).numpy()
    args = (pack_conv_weight(w.numpy()), b.numpy(), pw.numpy(), pb.numpy(), grid)
    got = conv_attn_numpy(u.numpy(), *args)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
    half = conv_attn_numpy(u.numpy().astype(np.float16), *args)
    assert half.dtype == np.float16 and np.abs(half - want).max() <= 2e-2 * np.abs(want).max()
    with pytest.raises(ValueError, match="tokens != |is not the"):
        conv_attn_numpy(u.numpy()[:, 2:] if layout == "tokens" else u.numpy()[:, :, 1:], *args)


def _conv_block_graph(layout: str = "nhwc", start: int = 1, pads: int = 1, extra_use: bool = False) -> onnx.ModelProto:
    """A conv block as the exporter writes it on a 2x3 grid (C=4, d=2): `nhwc` (Reshape -> Transpose ->
    Conv 3x3 -> Transpose -> Reshape), `nchw` (Transpose -> Reshape -> Conv -> Reshape -> Transpose) or
    `linear` (a 1x1 conv as MatMul + Add); the other arguments make variants that must not match."""
    rng = np.random.default_rng(0)
    c, d, gh, gw = 4, 2, 2, 3
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    inits = {"s0": i64(0), "s1": i64(1), "big": i64(2**63 - 1), "ax": i64(1), "st": i64(1), "sp": i64(start),
             "nchw": i64(-1, c, gh, gw), "nhwc": i64(-1, gh, gw, c), "flat": i64(-1, d, gh * gw),
             "toks": i64(-1, gh * gw, d), "cw": rng.standard_normal((d, c, 3, 3)).astype(np.float32),
             "cw1": rng.standard_normal((c, d)).astype(np.float32), "cb": rng.standard_normal(d).astype(np.float32),
             "pw": rng.standard_normal((d, c)).astype(np.float32), "pb": rng.standard_normal(c).astype(np.float32)}
    conv = helper.make_node("Conv", ["im", "cw", "cb"], ["cv"], kernel_shape=[3, 3], pads=[pads] * 4)
    nodes = [helper.make_node("Slice", ["u", "sp", "big", "ax", "st"], ["p"]),
             helper.make_node("Slice", ["u", "s0", "s1", "ax", "st"], ["cls"])]
    if layout == "nhwc":
        nodes += [helper.make_node("Reshape", ["p", "nhwc"], ["pt"]),
                  helper.make_node("Transpose", ["pt"], ["im"], perm=[0, 3, 1, 2]), conv,
                  helper.make_node("Relu", ["cv"], ["r"]),
                  helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 3, 1]),
                  helper.make_node("Reshape", ["rt", "toks"], ["y_tok"])]
    elif layout == "nchw":
        nodes += [helper.make_node("Transpose", ["p"], ["pt"], perm=[0, 2, 1]),
                  helper.make_node("Reshape", ["pt", "nchw"], ["im"]), conv,
                  helper.make_node("Relu", ["cv"], ["r"]),
                  helper.make_node("Reshape", ["r", "flat"], ["rf"]),
                  helper.make_node("Transpose", ["rf"], ["y_tok"], perm=[0, 2, 1])]
    else:
        nodes += [helper.make_node("MatMul", ["p", "cw1"], ["m1"]), helper.make_node("Add", ["m1", "cb"], ["cv"]),
                  helper.make_node("Relu", ["cv"], ["y_tok"])]
    nodes += [helper.make_node("MatMul", ["y_tok", "pw"], ["mm"]),
              helper.make_node("Add", ["mm", "pb"], ["lin"]),
              helper.make_node("Concat", ["cls", "lin"], ["y"], axis=1)]
    outputs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 1 + gh * gw, c])]
    if extra_use:
        outputs.append(helper.make_tensor_value_info("cv", onnx.TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("u", onnx.TensorProto.FLOAT,
                                                                              ["batch", 1 + gh * gw, c])],
                              outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("variant,count", [
    ({}, 1), ({"layout": "nchw"}, 1), ({"layout": "linear"}, 1),
    ({"start": 2}, 0), ({"pads": 0}, 0), ({"extra_use": True}, 0), ({"layout": "linear", "start": 0}, 0),
])
def test_matcher_on_the_exporters_patterns(variant: dict, count: int) -> None:
    from onnx.reference import ReferenceEvaluator

    from spvit_deploy.passes.plugins import reference_ops

    m = _conv_block_graph(**variant)
    before = [n.op_type for n in m.graph.node]
    out, rep = insert_conv_attn_plugins(m)
    assert rep.count == count and [n.op_type for n in m.graph.node] == before  # the input is not modified
    if count:
        assert [n.op_type for n in out.graph.node] == [PLUGIN_OP]
        assert rep.blocks[0]["kernel_size"] == (1 if variant.get("layout") == "linear" else 3)
        u = np.random.default_rng(1).standard_normal((2, 7, 4)).astype(np.float32)
        a = ReferenceEvaluator(m).run(None, {"u": u})[0]
        b = ReferenceEvaluator(out, new_ops=reference_ops()).run(None, {"u": u})[0]
        assert np.abs(a - b).max() <= 1e-5
        with pytest.raises(SpvitError, match="already has plugin nodes"):
            insert_conv_attn_plugins(out)


@pytest.mark.slow
def test_deit_b_published_arch_graph_structure(tmp_path) -> None:
    """DeiT-B with the published SPViT architecture: one plugin node per conv block, fp16 checks;
    structure only (no reference execution: too big for CI)."""
    from spvit_deploy.passes.prepare import transform_graph
    from spvit_deploy.export import export_onnx, load_export_model
    from spvit_deploy.spec import CONV_KERNEL, load_spec

    spec = load_spec("paper:deit_base").with_overrides(img_size=64)  # same layers, 4x4 grid: a faster export
    em = load_export_model(model="deit_b", arch=spec)
    export_onnx(em.module, tmp_path / "b.onnx", spec=em.spec, check_batches=(1,))
    graph, done = transform_graph(onnx.load(str(tmp_path / "b.onnx")), fp16=True, plugins=True)
    checks = check_graph(graph)
    want = sum(1 for b in spec.blocks if b.attn in CONV_KERNEL)
    assert want > 0 and checks.plugin_nodes == checks.conv_blocks == want == done["plugins"]["count"]
    assert checks.fp16_sensitive_ops == [] and checks.batch_dynamic
    blocks = done["plugins"]["blocks"]
    assert {(b["channels"], b["conv_channels"], tuple(b["grid"])) for b in blocks} == {(768, 64, (4, 4))}
    assert done["fp16"]["fp32_nodes"]["LayerNormalization"] == 2 * 12 + 1


def test_plugins_for_3x3_blocks_only(tiny_graphs) -> None:
    fp32 = onnx.load(str(tiny_graphs["fp32"]))
    only3, rep = insert_conv_attn_plugins(fp32, kernel_sizes=(3,))
    assert rep.count == 3 and {b["kernel_size"] for b in rep.blocks} == {3}
    assert get_metadata(only3)["plugins"]["kernel_sizes"] == [3]
    x = np.random.default_rng(4).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert np.abs(run_reference(only3, x) - run_reference(fp32, x)).max() <= 1e-4


def test_swin_conv_blocks_become_plugin_nodes_on_the_map(swin_graphs) -> None:
    """No class-token row: the node takes the (B, gh, gw, C) map itself, for 3x3 and 1x1 blocks, in
    stage 0 (16x16) and the last stage (4x4); the plugin graph equals the plain graph in onnx.reference."""
    m = onnx.load(str(swin_graphs["plugins"]))
    nodes = [n for n in m.graph.node if n.op_type == PLUGIN_OP]
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert sorted((a["kernel_size"], a["grid_h"], a["grid_w"]) for a in attrs) == [(1, 8, 8), (3, 4, 4), (3, 16, 16)]
    shapes = {vi.name: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]
              for vi in onnx.shape_inference.infer_shapes(m).graph.value_info}
    assert all(len(shapes[n.input[0]]) == 4 and shapes[n.input[0]][1:] == shapes[n.output[0]][1:] for n in nodes)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    want = run_reference(onnx.load(str(swin_graphs["fp32"])), x)
    assert np.abs(run_reference(m, x) - want).max() < 1e-4
