"""The comparator, the backend registry, and the runners agreeing with each other."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spvit_deploy.bench.backends import BACKENDS, Backend, backend_status, parse_backends, register_backend
from spvit_deploy.comparison import compare, compare_outputs
from spvit_deploy.errors import SpvitError

from bench_testing import NANO, nano_spec


def test_compare_metrics():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 10)).astype(np.float32)
    same = compare(ref, ref.copy())
    assert same.max_abs_diff == 0 and same.cosine == pytest.approx(1.0) and same.top1_agreement == 1.0
    flipped = ref.copy()
    flipped[0] = -flipped[0]
    c = compare(ref, flipped)
    assert c.top1_agreement == 0.75 and c.cosine == pytest.approx(-1.0) and c.max_abs_diff > 0
    assert c.ok(min_top1=0.7) and not c.ok(min_cosine=0.99)
    assert compare_outputs({"logits": ref}, {"logits": ref, "extra": ref})["logits"].max_abs_diff == 0
    with pytest.raises(SpvitError, match="shape"):
        compare(ref, ref[:2])
    with pytest.raises(SpvitError, match="missing"):
        compare_outputs({"logits": ref}, {})


def test_registry():
    assert parse_backends("onnxruntime, torch,onnxruntime") == ["onnxruntime", "torch"]
    with pytest.raises(SpvitError, match="unknown backend"):
        parse_backends("onnxruntime,nope")
    with pytest.raises(SpvitError, match="at least one"):
        parse_backends(",")
    assert backend_status("onnxruntime") is None and backend_status("torch") is None
    assert "tensorrt" in BACKENDS and backend_status("tensorrt")  # a reason, never a crash
    b = register_backend(Backend("fake-test", "onnx", "a test backend", lambda: "never here", BACKENDS["onnxruntime"].make))
    try:
        assert backend_status("fake-test") == "never here"
    finally:
        BACKENDS.pop(b.name)


def test_runners_agree(tmp_path):
    from spvit_deploy.bench.runners import OnnxRuntimeRunner, TorchRunner
    from spvit_deploy.export.onnx import export_onnx
    from spvit_deploy.export.source import load_export_model

    em = load_export_model(model=NANO, arch=nano_spec())
    export_onnx(em.module, tmp_path / "m.onnx", spec=em.spec)
    torch.save(em.module, tmp_path / "m.pt")
    feed = {"input": np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)}
    ort_out = OnnxRuntimeRunner(tmp_path / "m.onnx", threads=1).infer(feed)
    torch_out = TorchRunner.from_file(tmp_path / "m.pt").infer(feed)
    c = compare_outputs(torch_out, ort_out)["logits"]
    assert c.max_abs_diff <= 1e-4 and c.top1_agreement == 1.0 and c.cosine > 0.999999
