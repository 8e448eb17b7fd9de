"""The Triton client's request building and top-5 parsing, on real photos and digits, without a server.

A stand-in client answers like Triton's HTTP endpoint would (metadata, then the classification
extension's '<value>:<index>:<label>' strings), computed by ONNX Runtime on the exported model.
"""
from __future__ import annotations

import numpy as np
import pytest

from spvit_deploy.errors import SpvitError
from spvit_deploy.serve.client import Preprocess, build_request, classify, main, parse_classification, \
    preprocess, sample_images, topk

SPVIT = "deit_tiny_patch16_224_spvit"


def real_images():
    """scikit-learn's two sample photos (427x640 RGB) and three 8x8 handwritten digits (grayscale)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    photos = [im for _, im in sample_images()]
    return photos + [Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)) for i in range(3)]


class OnnxTriton:
    """Answers get_model_metadata / infer like Triton's HTTP client, using ONNX Runtime on the repo's model."""

    def __init__(self, model_dir):
        import onnxruntime as ort

        self.sess = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        self.labels = (model_dir / "labels.txt").read_text().splitlines()
        self.logits = None

    def get_model_metadata(self, model):
        if model != SPVIT:
            raise RuntimeError(f"Request for unknown model: '{model}' is not found")
        i, o = self.sess.get_inputs()[0], self.sess.get_outputs()[0]
        return {"name": model, "inputs": [{"name": i.name, "datatype": "FP32", "shape": [-1, *i.shape[1:]]}],
                "outputs": [{"name": o.name, "datatype": "FP32", "shape": [-1, *o.shape[1:]]}]}

    def infer(self, model, inputs, outputs):
        (inp,), (out,) = inputs, outputs
        assert inp.datatype() == "FP32"
        x = np.frombuffer(inp._get_binary_data(), np.float32).reshape(inp.shape())
        self.logits = self.sess.run(None, {inp.name(): x})[0]
        k = out._get_tensor()["parameters"]["classification"]
        rows = [[f"{row[i]:f}:{i}:{self.labels[i]}".encode() for i in np.argsort(-row, kind="stable")[:k]]
                for row in self.logits]
        arr = np.array(rows, dtype=object)
        return type("Result", (), {"as_numpy": lambda self_, name: arr if name == out.name() else None})()


def test_preprocess_real_images() -> None:
    images = real_images()
    pp = Preprocess(size=64)
    x = preprocess(images, pp)
    assert x.shape == (5, 3, 64, 64) and x.dtype == np.float32
    # photos are normalized to roughly zero mean, unit spread; a gray digit has equal channels before normalizing
    assert abs(float(x[:2].mean())) < 1.5 and 0.3 < float(x[:2].std()) < 2.0
    raw = x[2] * np.asarray(pp.std, np.float32)[:, None, None] + np.asarray(pp.mean, np.float32)[:, None, None]
    assert np.allclose(raw[0], raw[1], atol=1e-5) and np.allclose(raw[1], raw[2], atol=1e-5)


def test_preprocess_file_from_the_repository(onnx_repo) -> None:
    pp = Preprocess.from_file(onnx_repo[0] / SPVIT / "preprocess.json")
    assert pp.size == 64 and len(pp.mean) == 3 and 0 < pp.crop_pct <= 1
    with pytest.raises(SpvitError, match="cannot read preprocessing"):
        Preprocess.from_file(onnx_repo[0] / SPVIT / "missing.json")


def test_request_asks_triton_for_top5() -> None:
    batch = np.zeros((2, 3, 64, 64), np.float32)
    (inp,), (out,) = build_request(batch, "input", "logits", k=5)
    assert (inp.name(), inp.shape(), inp.datatype()) == ("input", [2, 3, 64, 64], "FP32")
    assert len(inp._get_binary_data()) == batch.nbytes
    assert out._get_tensor() == {"name": "logits", "parameters": {"classification": 5, "binary_data": True}}


def test_top5_of_real_images_through_the_client(onnx_repo) -> None:
    model_dir = onnx_repo[0] / SPVIT
    server = OnnxTriton(model_dir)
    images = real_images()
    pp = Preprocess.from_file(model_dir / "preprocess.json")
    got = classify("unused:8000", SPVIT, images, pp, k=5, client=server)
    want = topk(server.logits, server.labels, k=5)
    assert len(got) == len(images) and all(len(row) == 5 for row in got)
    assert [[(p.index, p.label) for p in row] for row in got] == [[(p.index, p.label) for p in row] for row in want]
    assert np.allclose([[p.score for p in row] for row in got], [[p.score for p in row] for row in want], atol=1e-5)
    assert all(row[0].score >= row[-1].score for row in got)
    with pytest.raises(SpvitError, match="cannot get metadata of 'nope'"):
        classify("unused:8000", "nope", images, client=server)


def test_parse_classification_without_labels() -> None:
    rows = parse_classification(np.array([[b"3.5:7", b"1.25:2"]], dtype=object))
    assert [(p.index, p.score, p.label) for p in rows[0]] == [(7, 3.5, "7"), (2, 1.25, "2")]
    labelled = parse_classification(np.array([[b"0.5:1:a:b"]], dtype=object))
    assert labelled[0][0].label == "a:b"


def test_main_needs_images(capsys) -> None:
    assert main(["--model", SPVIT]) == 2
    assert "give image files or --samples" in capsys.readouterr().err
