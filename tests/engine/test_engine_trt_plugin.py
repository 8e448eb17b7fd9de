"""The `tensorrt.plugin` definitions against a stand-in that validates schemas as TensorRT does, and the
AOT path end to end on CPU: ONNX plugin node -> (fake) parser -> register/autotune/aot_impl -> PTX for
sm_80/sm_90 whose entry has one parameter per plugin input, int32 extra and output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import spvit_kernels
from spvit_deploy.engine import trt_plugin
from spvit_deploy.passes.plugins import PLUGIN_ATTRS, PLUGIN_NAME

from engine_fakes import FakeTRT, TensorDesc, install


@pytest.fixture
def fake_trt(monkeypatch):
    return install(monkeypatch)


def test_definitions_pass_tensorrt_schema_checks(fake_trt) -> None:
    defs = trt_plugin.register_plugin()
    assert defs.aot and defs.jit and defs.name == PLUGIN_NAME
    d = fake_trt.plugin.registry[PLUGIN_NAME]
    assert d.tensor_names == ["u", "conv_weight", "conv_bias", "proj_weight", "proj_bias"]
    assert list(d.attrs) == list(PLUGIN_ATTRS) and d.num_outputs == 1
    assert d.impl_attrs == list(PLUGIN_ATTRS)  # serialized for the JIT engine
    assert trt_plugin.register_plugin() is defs  # once per process


def test_old_tensorrt_gets_only_the_jit_implementation(monkeypatch) -> None:
    trt = install(monkeypatch, FakeTRT(version="10.8.0.43", aot=False))
    defs = trt_plugin.register_plugin()
    assert not defs.aot and defs.jit and trt.plugin.registry[PLUGIN_NAME].aot_impl_fn is None


def test_aot_launch_as_tensorrt_calls_it(fake_trt, tiny_graphs, monkeypatch) -> None:
    """The fake parser walks every plugin node of the fp16 graph; compile is stubbed (real PTX: below)."""
    from types import SimpleNamespace

    calls = []

    def fake_compile(ks, dtype, cc, config, channels, head_dim, grid, ptx_version, prefix=1):
        calls.append((ks, dtype, cc, config, channels, head_dim, grid, prefix))
        # numpy integers, as arithmetic on Triton metadata can give: the plugin must hand SymInt32 plain ints
        return SimpleNamespace(kernel_name=f"k{ks}_{config}", ptx=".entry", grid_x=np.int64(3), threads=np.int32(128),
                               shared_bytes=np.int64(4096), ptx_version="8.7")

    monkeypatch.setattr(trt_plugin, "compile_kernel", fake_compile)
    trt_plugin.register_plugin()
    trt_plugin.set_aot_target(90)
    net = fake_trt.Builder(None).create_network(1 << fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    parser = fake_trt.OnnxParser(net, None)
    assert parser.parse_from_file(str(tiny_graphs["fp16_plugins"])), [e.desc() for e in parser.errors]
    launches = net.plugin_launches
    batch = onnx.load(str(tiny_graphs["fp16_plugins"])).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert len(launches) == 6 * 2  # six nodes x two fp16 tactics: aot_impl called at build time, AOT chosen
    assert trt_plugin.compiled_ptx_versions() == ["8.7"]  # by the node's own `aot` attribute (no flag asked)
    assert {c[3] for c in calls} == {"m64_k64_n64_w4_s3", "m32_k128_n64_w4_s2"} and {c[1] for c in calls} == {"fp16"}
    assert {(c[0], c[2], c[4], c[5], c[6], c[7]) for c in calls} == {(3, 90, 192, 64, (4, 4), 1),
                                                                     (1, 90, 192, 64, (4, 4), 1)}
    for r in launches:
        assert r["launch_values"] == {"grid_x": 3, "grid_y": None, "grid_z": 1, "block_x": 128, "block_y": 1,
                                      "block_z": 1, "shared_mem": 4096}
        assert r["launch"]["grid_y"] == f"Sym({batch})"  # the batch, resolved by TensorRT per shape
        assert r["extra"] == [f"Sym({batch})"]


def test_swin_maps_compile_the_class_token_free_kernel(fake_trt, swin_graphs, monkeypatch) -> None:
    """A rank-4 plugin input (a Swin map) asks for the PREFIX = 0 kernel, with its own grid per stage."""
    from types import SimpleNamespace

    calls = []

    def fake_compile(ks, dtype, cc, config, channels, head_dim, grid, ptx_version, prefix=1):
        calls.append((ks, channels, head_dim, grid, prefix))
        return SimpleNamespace(kernel_name=f"k{ks}", ptx=".entry", grid_x=1, threads=128, shared_bytes=0,
                               ptx_version="8.7")

    monkeypatch.setattr(trt_plugin, "compile_kernel", fake_compile)
    trt_plugin.register_plugin()
    trt_plugin.set_aot_target(90)
    net = fake_trt.Builder(None).create_network(1 << fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    parser = fake_trt.OnnxParser(net, None)
    assert parser.parse_from_file(str(swin_graphs["fp16_plugins"])), [e.desc() for e in parser.errors]
    assert set(calls) == {(3, 32, 32, (16, 16), 0), (1, 64, 32, (8, 8), 0), (3, 128, 32, (4, 4), 0)}
    trt_plugin.compiled_ptx_versions()


def test_fake_is_faithful_where_tensorrt_is_strict(fake_trt, tiny_graphs) -> None:
    """Real enum values, SymInt32 only from ints, plugin inputs typed by the tensors feeding them."""
    from engine_fakes import KernelLaunchParams, SymInt32

    F = fake_trt.NetworkDefinitionCreationFlag  # NvInfer.h, TensorRT 10.x
    assert (F.EXPLICIT_BATCH, F.STRONGLY_TYPED, F.PREFER_JIT_PYTHON_PLUGINS, F.PREFER_AOT_PYTHON_PLUGINS) == (0, 1, 2, 3)
    F11 = FakeTRT(version="11.1.0").NetworkDefinitionCreationFlag
    assert (F11.STRONGLY_TYPED, F11.PREFER_JIT_PYTHON_PLUGINS, F11.PREFER_AOT_PYTHON_PLUGINS) == (0, 1, 2)
    for bad in (np.int64(3), 3.0, "3"):
        with pytest.raises((TypeError, ValueError)):
            SymInt32(bad)
    with pytest.raises(TypeError):
        KernelLaunchParams().grid_x = np.int32(2)
    seen = []
    trt_plugin.register_plugin()
    d = fake_trt.plugin.registry[PLUGIN_NAME]
    d.register_fn = (lambda f: lambda *a, **k: (seen.append(a[0]), f(*a, **k))[1])(d.register_fn)
    net = fake_trt.Builder(None).create_network(0)
    d.aot_impl_fn = None  # JIT only here: the dtypes and shapes are what matter
    proto = onnx.load(str(tiny_graphs["fp16_plugins"]))
    for node in proto.graph.node:  # drop the `aot` request, or the parser asks for the (removed) AOT impl
        for a in [a for a in node.attribute if a.name == "aot"]:
            node.attribute.remove(a)
    path = Path(str(tiny_graphs["fp16_plugins"]).replace(".onnx", ".noaot.onnx"))
    onnx.save(proto, str(path))
    parser = fake_trt.OnnxParser(net, None)
    assert parser.parse_from_file(str(path)), [e.desc() for e in parser.errors]
    assert {u.dtype for u in seen} == {fake_trt.float16} and {u.shape[1:] for u in seen} == {(17, 192)}
    assert all(u.shape[0] == -1 for u in seen)  # the dynamic batch, from the graph input upstream


def test_aot_needs_a_target(fake_trt) -> None:
    trt_plugin.register_plugin()
    trt_plugin.set_aot_target(None)
    d = fake_trt.plugin.registry[PLUGIN_NAME]
    u = TensorDesc(fake_trt.float16, (-1, 17, 192))
    ws = [TensorDesc(fake_trt.float16, s) for s in ((3, 3, 192, 64), (64,), (192, 64), (192,))]
    with pytest.raises(RuntimeError, match="set_aot_target"):
        d.aot_impl_fn(u, *ws, 3, 4, 4, (u.like(),), 1)


def test_tactics_map_to_kernel_configs() -> None:
    assert trt_plugin.tactic_config("fp16", 0) == trt_plugin.tactic_config("fp16", 1) == "m64_k64_n64_w4_s3"
    assert trt_plugin.tactic_config("fp16", 2) == "m32_k128_n64_w4_s2"
    assert trt_plugin.tactic_config("fp32", 1).startswith("tf32x3_")
    with pytest.raises(ValueError):
        trt_plugin.tactic_config("fp32", 2)


AOT_SCRIPT = """
import json, sys
sys.path.insert(0, {tests!r})
import pytest
from engine_fakes import install
from spvit_deploy.engine import trt_plugin
mp = pytest.MonkeyPatch()
trt = install(mp)
trt_plugin.register_plugin()
rows = []
for cc in (80, 90):
    trt_plugin.set_aot_target(cc)
    for graph in ({fp16!r}, {fp32!r}):
        net = trt.Builder(None).create_network(1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        parser = trt.OnnxParser(net, None)
        assert parser.parse_from_file(graph), [e.desc() for e in parser.errors]
        for r in net.plugin_launches:
            rows.append({{"cc": cc, "graph": graph, **r}})
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def aot_launches(tiny_graphs) -> list[dict]:
    """The real aot_impl (Triton -> PTX) for sm_80 and sm_90, in a process without TRITON_INTERPRET."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    kernels_dir = str(Path(spvit_kernels.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([kernels_dir, *filter(None, [env.get("PYTHONPATH")])])
    script = AOT_SCRIPT.format(tests=str(Path(__file__).parent), fp16=str(tiny_graphs["fp16_plugins"]),
                               fp32=str(tiny_graphs["plugins"]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_aot_ptx_for_the_requested_compute_capability(aot_launches) -> None:
    from spvit_kernels.trt_kernel import entry_params

    assert len(aot_launches) == 2 * 6 * (2 + 1)  # cc x nodes x (fp16 tactics + fp32 tactics)
    for r in aot_launches:
        ptx, name = r["ptx"], r["kernel_name"]
        assert f".target sm_{r['cc']}{'a' if r['cc'] >= 90 else ''}\n" in ptx
        assert f".visible .entry {name}(" in ptx
        params = entry_params(ptx, name)
        assert len(params) == r["num_inputs"] + len(r["extra"]) + r["num_outputs"] == 5 + 1 + 1
        assert ".u32" in params[5]  # the int32 batch between the inputs and the output
        assert name.startswith("spvit_conv_attn_k") and ("_fp16_" in name) == ("fp16" in r["graph"])
        assert r["launch_values"]["block_x"] in (128, 256) and r["launch_values"]["shared_mem"] <= 48 * 1024
