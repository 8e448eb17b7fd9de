"""build-engine: the one-line error without TensorRT, and (with a stand-in TensorRT) network flags, the
batch profiles, the timing cache reused and merged across builds (and never costing the engine), the
atomic plan + sidecar, the `aot` node attribute, the PTX ISA against the driver, the Triton version."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from spvit_deploy.cli import main
from spvit_deploy.engine import build, trt_plugin
from spvit_deploy.engine.build import BuildSettings, TimingCache, build_engine, network_flags, sidecar_path
from spvit_deploy.errors import SpvitError

from engine_fakes import FakeConfig, FakeTRT, install


@pytest.mark.skipif("tensorrt" in sys.modules or __import__("importlib").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here")
def test_without_tensorrt_one_line_exit_2_nothing_written(tiny_graphs, tmp_path) -> None:
    out = tmp_path / "e" / "model.plan"
    proc = subprocess.run([sys.executable, "-m", "spvit_deploy", "build-engine", "--onnx", str(tiny_graphs["fp32"]),
                           "--fp16", "--plugins", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("spvit-deploy build-engine: error: TensorRT is not installed")
    assert "spvit-deploy[trt]" in lines[0] and "NVIDIA GPU" in lines[0] and "docker" in lines[0].lower()
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.fixture
def fake_trt(monkeypatch):
    trt = install(monkeypatch)

    def compile_stub(ks, dtype, cc, config, channels, head_dim, grid, ptx_version, prefix=1):
        return SimpleNamespace(kernel_name=f"k{ks}", ptx=".entry", grid_x=1, threads=128, shared_bytes=0,
                               ptx_version=f"{(ptx_version or 88) // 10}.{(ptx_version or 88) % 10}")

    monkeypatch.setattr(trt_plugin, "compile_kernel", compile_stub)
    monkeypatch.setattr("spvit_kernels.trt_kernel.bundled_ptx_version", lambda cc: 88)  # Triton's ptxas: PTX 8.8
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set by the test conftest; build-engine refuses it
    return trt


def test_build_writes_plan_and_sidecar(fake_trt, tiny_graphs, tmp_path) -> None:
    out = tmp_path / "model.plan"
    settings = BuildSettings(fp16=True, plugins=True, min_batch=1, opt_batch=8, max_batch=32, workspace_gb=2,
                             timing_cache=str(tmp_path / "tc.bin"))
    meta = build_engine(tiny_graphs["fp16_plugins"], out, settings)
    assert out.is_file() and json.loads(sidecar_path(out).read_text()) == meta
    b = fake_trt.builders[-1]
    F = fake_trt.NetworkDefinitionCreationFlag
    assert b.network.flags == (1 << F.STRONGLY_TYPED) | (1 << F.PREFER_AOT_PYTHON_PLUGINS)
    assert b.config.pools == {fake_trt.MemoryPoolType.WORKSPACE: 2 * 2**30}
    assert b.config.profiles[0].shapes == {"input": ((1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))}
    assert len(b.network.plugin_launches) == 6 * 2 and trt_plugin._TARGET["cc"] == 90
    assert meta["tensorrt_version"] == "10.13.3.9" and meta["gpu"] == "NVIDIA H100 80GB HBM3"
    assert meta["compute_capability"] == "9.0" and meta["precision"] == "fp16" and meta["strongly_typed"]
    assert meta["profile"] == {"min": 1, "opt": 8, "max": 32}
    assert meta["plugins"] == [{"name": "spvit::SpvitConvAttn", "version": "1", "library": None,
                                "implementation": "aot", "count": 6, "python_needed_at_runtime": False,
                                "ptx_version_cap": 87, "bundled_ptx": 88, "driver_version": "570.124.06",
                                "driver_cuda": "12.8", "driver_max_ptx": 87, "ptx_versions": ["8.7"]}]
    assert meta["onnx"]["sha256"] == hashlib.sha256(Path(tiny_graphs["fp16_plugins"]).read_bytes()).hexdigest()
    assert meta["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 3, 64, 64]}]
    assert meta["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]
    # the Triton exporter reads this sidecar
    from spvit_deploy.serve.triton_config import engine_signature

    sig, _ = engine_signature(out)
    assert sig.profile == (1, 8, 32) and [t.name for t in sig.inputs] == ["input"]


def test_timing_cache_reused_and_merged(fake_trt, tiny_graphs, tmp_path) -> None:
    cache = tmp_path / "timing.cache"
    s = BuildSettings(timing_cache=str(cache))
    first = build_engine(tiny_graphs["fp32"], tmp_path / "a.plan", s)["timing_cache"]
    assert first["loaded_bytes"] == 0 and not first["reused"] and first["saved_bytes"] == cache.stat().st_size
    n1 = len(json.loads(cache.read_bytes())["entries"])
    second = build_engine(tiny_graphs["fp32"], tmp_path / "b.plan", s)["timing_cache"]
    assert second["reused"] and second["loaded_bytes"] == first["saved_bytes"]
    assert len(json.loads(cache.read_bytes())["entries"]) == n1 + 1

    # another build wrote the file between our load and our save: its entries are kept
    tc = TimingCache(cache)
    cfg = FakeConfig(fake_trt)
    tc.attach(cfg)
    data = json.loads(cache.read_bytes())
    data["entries"]["other-build"] = 2.0
    cache.write_bytes(json.dumps(data).encode())
    cfg.cache.entries["ours"] = 3.0
    tc.save(cfg)
    entries = json.loads(cache.read_bytes())["entries"]
    assert {"other-build", "ours"} <= set(entries)


def test_timing_cache_from_another_gpu_is_replaced(fake_trt, tiny_graphs, tmp_path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(json.dumps({"header": {"trt": "10.13.3.9", "gpu": "A100"}, "entries": {"x": 1}}).encode())
    meta = build_engine(tiny_graphs["fp32"], tmp_path / "a.plan", BuildSettings(timing_cache=str(cache)))
    assert not meta["timing_cache"]["reused"] and "another TensorRT version or GPU" in meta["timing_cache"]["note"]
    saved = json.loads(cache.read_bytes())
    assert saved["header"]["gpu"] == "H100" and "x" not in saved["entries"]  # no other GPU's timings merged in


def test_unwritable_timing_cache_keeps_the_engine(fake_trt, tiny_graphs, tmp_path) -> None:
    cache = tmp_path / "cache_dir"  # a folder where the cache file should go: it cannot be written
    cache.mkdir()
    out = tmp_path / "model.plan"
    meta = build_engine(tiny_graphs["fp32"], out, BuildSettings(timing_cache=str(cache)))
    assert out.is_file() and json.loads(sidecar_path(out).read_text()) == meta
    assert meta["timing_cache"]["saved_bytes"] == 0 and "could not be written" in meta["timing_cache"]["note"]


def test_out_named_like_the_sidecar_is_refused(fake_trt, tiny_graphs, tmp_path) -> None:
    with pytest.raises(SpvitError, match="overwritten by the engine's JSON sidecar"):
        build_engine(tiny_graphs["fp32"], tmp_path / "model.json", BuildSettings())
    assert not any(tmp_path.iterdir())


def test_failures_leave_the_previous_engine_alone(fake_trt, tiny_graphs, tmp_path) -> None:
    out = tmp_path / "model.plan"
    build_engine(tiny_graphs["fp32"], out, BuildSettings())
    before = (out.read_bytes(), sidecar_path(out).read_text())
    fake_trt.fail_build = True
    with pytest.raises(SpvitError, match="could not build"):
        build_engine(tiny_graphs["fp16"], out, BuildSettings())
    fake_trt.fail_build, fake_trt.parse_error = False, "Unsupported operator Foo"
    with pytest.raises(SpvitError, match="parser rejected .*Unsupported operator Foo at node 'node_x'"):
        build_engine(tiny_graphs["fp16"], out, BuildSettings())
    assert (out.read_bytes(), sidecar_path(out).read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.plan"]  # no temporaries


def test_sidecar_write_failure_removes_everything(tmp_path, monkeypatch) -> None:
    from spvit_deploy import _io

    def boom(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(_io, "write_json", boom)
    with pytest.raises(OSError):
        build.write_engine(tmp_path / "m.plan", b"plan", {})
    assert list(tmp_path.iterdir()) == []


def test_aot_build_refuses_the_triton_interpreter(fake_trt, tiny_graphs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(SpvitError, match="TRITON_INTERPRET=1 is set"):
        build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True))
    assert not (tmp_path / "m.plan").exists()


def test_old_tensorrt_falls_back_to_jit(monkeypatch, tiny_graphs, tmp_path) -> None:
    install(monkeypatch, FakeTRT(version="10.8.0.43", aot=False))
    said = []
    meta = build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True), log=said.append)
    assert meta["plugins"][0]["implementation"] == "jit" and meta["plugins"][0]["python_needed_at_runtime"]
    assert meta["precision"] == "fp32" and any("JIT" in s for s in said)


def test_network_flags_for_10x_and_11() -> None:
    trt10 = FakeTRT()
    F = trt10.NetworkDefinitionCreationFlag
    assert network_flags(trt10, None) == 1 << F.STRONGLY_TYPED
    assert network_flags(trt10, "jit") == (1 << F.STRONGLY_TYPED) | (1 << F.PREFER_JIT_PYTHON_PLUGINS)
    old = FakeTRT(version="10.5.0")
    del old.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS
    assert network_flags(old, "aot") == 1 << F.STRONGLY_TYPED


@pytest.mark.parametrize("kw,message", [
    ({"min_batch": 4, "opt_batch": 2}, "1 <= min <= opt <= max"),
    ({"max_batch": 0}, "1 <= min"),
    ({"plugin_impl": "cpp"}, "--plugin-impl"),
    ({"workspace_gb": 0}, "--workspace-gb"),
    ({"optimization_level": 9}, "--optimization-level"),
])
def test_settings_are_checked(kw: dict, message: str) -> None:
    with pytest.raises(SpvitError, match=message):
        BuildSettings(**kw)


def test_cli_with_fake_tensorrt(fake_trt, tiny_graphs, tmp_path, capsys) -> None:
    out = tmp_path / "engines" / "m.plan"
    assert main(["build-engine", "--onnx", str(tiny_graphs["fp32"]), "--fp16", "--plugins", "--out", str(out),
                 "--max-batch", "8", "--opt-batch", "4", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    graph = out.with_name("m.trt.onnx")  # what the engine was built from, kept beside it
    assert graph.is_file() and meta["onnx"]["path"] == str(graph)
    assert meta["source"]["fp16"]["fp32_nodes"]["LayerNormalization"] == 25 and meta["source"]["plugins"]["count"] == 6
    assert (out.parent / "tensorrt.timing-cache").is_file()  # the default cache beside the engine
    assert main(["build-engine", "--onnx", str(tiny_graphs["fp32"]), "--out", str(out), "--min-batch", "9", "--opt-batch", "4"]) == 2
    assert "1 <= min <= opt <= max" in capsys.readouterr().err
    assert main(["build-engine", "--onnx", str(tiny_graphs["fp32"]), "--out", str(out), "--opt-batches", "1,16,64"]) == 0
    assert "opt 1,16,64" in capsys.readouterr().out
    assert main(["build-engine", "--onnx", str(tiny_graphs["fp32"]), "--out", str(out), "--opt-batches", "1,x"]) == 2
    assert "--opt-batches takes" in capsys.readouterr().err


@pytest.mark.skipif(__import__("shutil").which("nvidia-smi") is not None, reason="an NVIDIA GPU may be here")
def test_gpu_info_without_a_gpu_is_one_line() -> None:
    from spvit_deploy.engine.device import GpuInfo, gpu_info

    with pytest.raises(SpvitError, match="no NVIDIA GPU is visible here") as e:
        gpu_info()
    assert "\n" not in str(e.value)
    assert GpuInfo("x", "9.0").cc == 90 and GpuInfo("x", "12.0").cc == 120


# ------------------------------------------------------------------------------ issue 15 findings


def test_plugin_nodes_say_aot_so_any_builder_picks_it(fake_trt, tiny_graphs, monkeypatch) -> None:
    """A builder that sets no PREFER_*_PYTHON_PLUGINS flag (trtexec, Polygraphy, a user script) meets a
    plugin with both implementations: TensorRT refuses it unless the node says `aot` (finding 7)."""
    import onnx

    nodes = [n for n in onnx.load(str(tiny_graphs["fp16_plugins"])).graph.node if n.op_type == "SpvitConvAttn"]
    assert nodes and all(onnx.helper.get_attribute_value(a) == 1 for n in nodes for a in n.attribute if a.name == "aot")
    assert all(any(a.name == "aot" for a in n.attribute) for n in nodes)
    trt_plugin.register_plugin(aot=True, jit=True)
    trt_plugin.set_aot_target(90)
    net = fake_trt.Builder(None).create_network(1 << fake_trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    parser = fake_trt.OnnxParser(net, None)
    assert parser.parse_from_file(str(tiny_graphs["fp16_plugins"])), [e.desc() for e in parser.errors]
    assert net.plugin_launches and all("kernel_name" in r for r in net.plugin_launches)  # the AOT kernels


def test_jit_build_drops_the_aot_attribute(monkeypatch, tiny_graphs, tmp_path) -> None:
    install(monkeypatch, FakeTRT(version="10.8.0.43", aot=False))
    meta = build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True))
    assert meta["plugins"][0]["implementation"] == "jit" and "ptx_versions" not in meta["plugins"][0]


@pytest.mark.parametrize("failure", ["raise", "none", "corrupt"])
def test_every_timing_cache_failure_keeps_the_engine(fake_trt, tiny_graphs, tmp_path, failure) -> None:
    """Finding 6: the plan is written before the cache is saved, and no cache problem loses it."""
    cache = tmp_path / "tc.bin"
    if failure == "corrupt":
        cache.write_bytes(b"\x00not a timing cache")
    else:
        fake_trt.cache_failure = failure
    out = tmp_path / "model.plan"
    meta = build_engine(tiny_graphs["fp32"], out, BuildSettings(timing_cache=str(cache)))
    assert out.is_file() and json.loads(sidecar_path(out).read_text()) == meta
    assert meta["timing_cache"]["note"]
    assert (meta["timing_cache"]["saved_bytes"] > 0) == (failure == "corrupt")  # a corrupt file is replaced


def test_plan_is_written_before_the_timing_cache(fake_trt, tiny_graphs, tmp_path, monkeypatch) -> None:
    out = tmp_path / "model.plan"
    seen = []
    monkeypatch.setattr(TimingCache, "save", lambda self, config: seen.append(out.is_file()))
    build_engine(tiny_graphs["fp32"], out, BuildSettings(timing_cache=str(tmp_path / "tc.bin")))
    assert seen == [True]


def test_one_optimization_profile_per_batch(fake_trt, tiny_graphs, tmp_path) -> None:
    """Finding 4: TensorRT tunes at every batch we time (opt = that batch), all in one engine."""
    out = tmp_path / "model.plan"
    meta = build_engine(tiny_graphs["fp32"], out, BuildSettings(min_batch=1, max_batch=64, opt_batches=(1, 16, 64)))
    profiles = fake_trt.builders[-1].config.profiles
    assert [p.shapes["input"][1][0] for p in profiles] == [1, 16, 64]
    assert all(p.shapes["input"][0][0] == 1 and p.shapes["input"][2][0] == 64 for p in profiles)
    assert [p["opt"] for p in meta["profiles"]] == [1, 16, 64] and meta["profile"]["opt"] == 1
    with pytest.raises(SpvitError, match="within 1..64"):
        BuildSettings(max_batch=64, opt_batches=(1, 128))


def test_ptx_version_follows_the_driver_and_is_recorded(fake_trt, tiny_graphs, tmp_path, monkeypatch) -> None:
    """Finding 2: the kernels' PTX ISA is capped at what the driver loads; the sidecar says which."""
    from spvit_deploy.engine import device

    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo("550.54", (12, 4), "fake"))
    monkeypatch.setattr("spvit_kernels.trt_kernel.bundled_ptx_version", lambda cc: 88)
    meta = build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True))
    rec = meta["plugins"][0]
    assert trt_plugin._TARGET == {"cc": 90, "ptx_version": 84} and rec["ptx_version_cap"] == 84
    assert rec["ptx_versions"] == ["8.4"] and rec["driver_cuda"] == "12.4"
    assert rec["driver_version"] == "550.54" and rec["bundled_ptx"] == 88


def test_too_old_driver_is_one_line(fake_trt, tiny_graphs, tmp_path, monkeypatch) -> None:
    from spvit_deploy.engine import device

    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo("470.1", (11, 4), "fake"))
    with pytest.raises(SpvitError, match=r"loads PTX ISA up to 7.4, but sm_90 kernels need 8.0") as e:
        build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True))
    assert "\n" not in str(e.value) and not (tmp_path / "m.plan").exists()
    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo("550.54", (12, 4), "fake"))
    with pytest.raises(SpvitError, match="--ptx-version 8.7 is newer than"):
        build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True, ptx_version=87))
    with pytest.raises(SpvitError, match="--ptx-version 7.8 cannot target sm_90"):  # Triton builds sm_90a: PTX 8.0+
        build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True, ptx_version=78))
    assert device.max_ptx_for_cuda((12, 9)) == 88 and device.max_ptx_for_cuda((13, 0)) == 90


def test_old_triton_is_one_line(fake_trt, tiny_graphs, tmp_path, monkeypatch) -> None:
    """Finding 1: Triton < 3.3 has ASTSource(constants=..., AttrsDescriptor): a clear error, not a failed build."""
    import triton

    monkeypatch.setattr(triton, "__version__", "3.2.0")
    with pytest.raises(SpvitError, match=r"Triton 3.2.0 is too old .* >= 3.3") as e:
        build_engine(tiny_graphs["plugins"], tmp_path / "m.plan", BuildSettings(plugins=True))
    assert "\n" not in str(e.value)


def test_nvidia_smi_honours_cuda_visible_devices(monkeypatch) -> None:
    from spvit_deploy.engine import device

    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        return SimpleNamespace(returncode=0, stdout="NVIDIA H100 80GB HBM3, 9.0, 81559\n")

    monkeypatch.setattr(device.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(device.subprocess, "run", run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert device._from_nvidia_smi(0).cc == 90 and calls[-1][1] == "--id=3"
    device._from_nvidia_smi(1)
    assert calls[-1][1] == "--id=1"
    assert device._from_nvidia_smi(2) is None  # only two visible
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc,-1,2")
    assert device.visible_device(0) == "GPU-abc" and device.visible_device(1) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.visible_device(0) is None
