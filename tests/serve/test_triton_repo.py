"""export-triton: configs parse with Triton's own ModelConfig and match the model files, both backends."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from spvit_deploy.cli import main
from spvit_deploy.errors import SpvitError
from spvit_deploy.serve import check_model_dir, export_triton, model_config_pb2
from spvit_deploy.serve.triton_config import default_preferred
from spvit_deploy.serve.triton_repo import class_labels

SPVIT, DENSE = "deit_tiny_patch16_224_spvit", "deit_tiny_patch16_224_dense"
IMG, CLASSES = 64, 10  # the run_dir fixture's (tests/serve/conftest.py)


def parse(path: Path):
    """config.pbtxt -> Triton's inference.ModelConfig (parsed here, independently of the writer)."""
    cfg = model_config_pb2().ModelConfig()
    text_format.Parse(path.read_text(), cfg)
    return cfg


def onnx_io(path: Path) -> dict[str, tuple[str, list[int]]]:
    import onnx

    m = onnx.load(str(path))
    inits = {t.name for t in m.graph.initializer}
    io = {}
    for v in [*[i for i in m.graph.input if i.name not in inits], *m.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
        io[v.name] = (onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type), dims)
    return io


def test_uses_tritons_own_message() -> None:
    pb = model_config_pb2()
    assert pb.ModelConfig.DESCRIPTOR.full_name == "inference.ModelConfig"
    assert "tritonclient" in Path(pb.__file__).parts


def test_dense_and_compressed_side_by_side(onnx_repo, run_dir) -> None:
    import onnxruntime as ort

    repo, models = onnx_repo
    assert sorted(p.name for p in repo.iterdir()) == sorted([SPVIT, DENSE])
    assert [m.name for m in models] == [SPVIT, DENSE]
    pb = model_config_pb2()
    for name in (SPVIT, DENSE):
        d = repo / name
        cfg = parse(d / "config.pbtxt")
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
        io = onnx_io(d / "1" / "model.onnx")
        assert io["input"] == ("FLOAT", [-1, 3, IMG, IMG]) and io["logits"] == ("FLOAT", [-1, CLASSES])
        for t in [*cfg.input, *cfg.output]:  # dims = the ONNX shape without its dynamic batch dimension
            assert pb.DataType.Name(t.data_type) == "TYPE_FP32" and [-1, *t.dims] == io[t.name][1]
        assert [t.name for t in cfg.input] == ["input"] and [t.name for t in cfg.output] == ["logits"]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 16, 32, 64]
        assert [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group] == [(1, "KIND_GPU")]
        assert cfg.output[0].label_filename == "labels.txt"
        assert (d / "labels.txt").read_text().splitlines() == [f"class_{i}" for i in range(CLASSES)]
        meta = json.loads((run_dir / "meta.json").read_text())
        assert json.loads((d / "preprocess.json").read_text()) == meta["data_config"]
        check_model_dir(d)
        sess = ort.InferenceSession(str(d / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"input": np.zeros((3, 3, IMG, IMG), np.float32)})[0]
        assert out.shape == (3, CLASSES)  # the batch dimension really is dynamic
    assert not list(repo.glob(".*"))  # no temporary folders left behind


def test_compressed_export_is_the_run(onnx_repo, run_dir) -> None:
    import onnxruntime as ort
    import torch

    from spvit_deploy.run import load_run

    x = np.random.default_rng(0).standard_normal((2, 3, IMG, IMG)).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_repo[0] / SPVIT / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = load_run(run_dir).model(torch.from_numpy(x)).numpy()
    assert np.abs(sess.run(None, {"input": x})[0] - ref).max() < 1e-4


def test_cpu_instances_and_serving_options(run_dir, onnx_repo, tmp_path, capsys) -> None:
    onnx = onnx_repo[0] / SPVIT / "1" / "model.onnx"
    argv = ["export-triton", "--run", str(run_dir), "--repo", str(tmp_path / "r"), "--onnx", str(onnx),
            "--name", "small", "--kind", "cpu", "--instances", "3", "--max-batch", "16", "--preferred", "4,16",
            "--max-queue-delay-us", "500", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in out] == ["small"] and out[0]["kind"] == "KIND_CPU"
    cfg = parse(tmp_path / "r" / "small" / "config.pbtxt")
    assert cfg.max_batch_size == 16 and list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.instance_group[0].count == 3 and cfg.instance_group[0].kind == model_config_pb2().ModelInstanceGroup.KIND_CPU


def fake_engine(path: Path, *, classes: int = CLASSES, profile=(1, 16, 32), plugins=None) -> Path:
    """A stand-in `model.plan` (TensorRT cannot run here) and the sidecar build-engine writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a real engine")
    path.with_suffix(".json").write_text(json.dumps({
        "tensorrt_version": "10.13.3.9", "precision": "fp16", "gpu": "NVIDIA H100 80GB HBM3",
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3, IMG, IMG]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, classes]}],
        "profile": {"min": profile[0], "opt": profile[1], "max": profile[2]},
        "plugins": plugins if plugins is not None else [{"name": "spvit::SpvitConvAttn", "library": None,
                                                         "implementation": "aot", "python_needed_at_runtime": False}],
    }))
    return path


def test_tensorrt_configs_from_engine_sidecars(run_dir, tmp_path, capsys) -> None:
    plan = fake_engine(tmp_path / "e" / "model.plan")
    dense_plan = fake_engine(tmp_path / "d" / "model.plan", profile=([1, 3, IMG, IMG], [8, 3, IMG, IMG], [128, 3, IMG, IMG]),
                             plugins=[{"name": "spvit::legacy", "library": "/opt/spvit/plugins/libspvit.so"}])
    repo = tmp_path / "repo"
    assert main(["export-triton", "--run", str(run_dir), "--repo", str(repo), "--backend", "tensorrt",
                 "--engine", str(plan), "--dense", "--dense-engine", str(dense_plan)]) == 0
    printed = capsys.readouterr().out
    assert "compiled ahead of time" in printed and "docker/plugins" in printed
    pb = model_config_pb2()
    for name, max_batch, preferred in ((SPVIT, 32, [4, 8, 16, 32]), (DENSE, 64, [8, 16, 32, 64])):
        d = repo / name
        cfg = parse(d / "config.pbtxt")
        assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == max_batch  # capped by the profile max
        assert list(cfg.dynamic_batching.preferred_batch_size) == preferred  # the profile's opt batch included
        assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [("input", "TYPE_FP32", [3, IMG, IMG])]
        assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [CLASSES])]
        assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
        assert (d / "1" / "model.plan").read_bytes() == b"not a real engine"
        assert json.loads((d / "1" / "model.json").read_text())["tensorrt_version"] == "10.13.3.9"
        check_model_dir(d)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--backend", "trt"], "unknown backend 'trt'"),
        (["--backend", "tensorrt"], "needs --engine"),
        (["--backend", "tensorrt", "--engine", "{tmp}/alone.plan"], "has no sidecar"),
        (["--backend", "tensorrt", "--engine", "{tmp}/missing.plan"], "does not exist"),
        (["--backend", "tensorrt", "--engine", "{tmp}/e/model.plan", "--kind", "cpu"], "GPUs only"),
        (["--backend", "tensorrt", "--engine", "{tmp}/e/model.plan", "--max-batch", "64"], "exceeds the engine profile max"),
        (["--backend", "tensorrt", "--engine", "{tmp}/e/model.plan", "--dense"], "needs --dense-engine"),
        (["--backend", "tensorrt", "--engine", "{tmp}/wrong/model.plan"], "not (B, 10)"),
        (["--backend", "tensorrt", "--engine", "{tmp}/jit/model.plan"], "JIT (Python) implementation"),
        (["--engine", "{tmp}/e/model.plan"], "need --backend tensorrt"),
        (["--preferred", "8,x"], "comma-separated integers"),
        (["--preferred", "128", "--onnx", "{onnx}"], "outside 1..64"),
        (["--instances", "0"], "--instances must be >= 1"),
        (["--name", "bad/name"], "model name 'bad/name'"),
        (["--labels", "{tmp}/labels.txt", "--onnx", "{onnx}"], "has 3 labels; the model has 10 classes"),
        (["--onnx", "{tmp}/missing.onnx"], "does not exist"),
        (["--onnx", "{tmp}/e/model.plan"], "serves .onnx files"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(extra, message, run_dir, onnx_repo, tmp_path, capsys) -> None:
    fake_engine(tmp_path / "e" / "model.plan")
    fake_engine(tmp_path / "wrong" / "model.plan", classes=1000)
    fake_engine(tmp_path / "jit" / "model.plan", plugins=[{"name": "spvit::SpvitConvAttn", "library": None,
                                                           "implementation": "jit", "python_needed_at_runtime": True}])
    (tmp_path / "alone.plan").write_bytes(b"x")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    subs = {"{tmp}": str(tmp_path), "{onnx}": str(onnx_repo[0] / SPVIT / "1" / "model.onnx")}
    extra = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in extra]
    repo = tmp_path / "repo"
    assert main(["export-triton", "--run", str(run_dir), "--repo", str(repo), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not repo.exists() or not list(repo.iterdir())


def test_missing_run_and_existing_model(onnx_repo, run_dir, tmp_path, capsys) -> None:
    assert main(["export-triton", "--run", str(tmp_path / "nope"), "--repo", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    repo = onnx_repo[0]
    before = (repo / SPVIT / "config.pbtxt").read_text()
    assert main(["export-triton", "--run", str(run_dir), "--repo", str(repo), "--onnx", str(repo / SPVIT / "1" / "model.onnx")]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (repo / SPVIT / "config.pbtxt").read_text() == before


def test_force_replaces_a_model_folder(onnx_repo, run_dir, tmp_path) -> None:
    repo = tmp_path / "r"
    src = onnx_repo[0] / SPVIT / "1" / "model.onnx"
    export_triton(run_dir, repo, onnx=src, max_batch=8)
    (repo / SPVIT / "stale.txt").write_text("from before")
    export_triton(run_dir, repo, onnx=src, max_batch=4, force=True)
    assert parse(repo / SPVIT / "config.pbtxt").max_batch_size == 4
    assert not (repo / SPVIT / "stale.txt").exists()
    assert [p.name for p in repo.iterdir()] == [SPVIT]  # no temporary or old folders left


def test_check_catches_a_config_that_drifted_from_its_model(onnx_repo, tmp_path) -> None:
    import shutil

    d = tmp_path / SPVIT
    shutil.copytree(onnx_repo[0] / SPVIT, d)
    cfg = d / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("dims: 64\n", "dims: 32\n", 1))
    with pytest.raises(SpvitError, match="do not match the model file"):
        check_model_dir(d)
    cfg.write_text("name: 'x' platform: ")
    with pytest.raises(SpvitError, match="does not parse as Triton's ModelConfig"):
        check_model_dir(d)


def test_labels_and_preferred_defaults(tmp_path) -> None:
    imagenet = class_labels(1000)
    assert len(imagenet) == 1000 and imagenet[1] == "goldfish"
    assert class_labels(3) == ["class_0", "class_1", "class_2"]
    (tmp_path / "l.txt").write_text("cat\ndog\n\n")
    assert class_labels(2, tmp_path / "l.txt") == ["cat", "dog"]
    assert default_preferred(64) == (8, 16, 32, 64)
    assert default_preferred(1) == (1,)
    assert default_preferred(48, opt=24) == (8, 16, 24, 32, 48)
