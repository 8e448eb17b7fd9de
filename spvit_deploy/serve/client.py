"""A Triton HTTP client: real images in, top-5 classes out (Triton's classification extension).

    python -m spvit_deploy.serve.client --url localhost:8000 --model deit_small_patch16_224_spvit \
        --preprocess model_repository/deit_small_patch16_224_spvit/preprocess.json photo.jpg
    python -m spvit_deploy.serve.client --model ... --samples    # scikit-learn's two sample photos

Request building and result parsing are plain functions (tested without a server); `classify`
is the only part that talks to Triton.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import SpvitError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Triton's type names (model metadata) -> numpy dtypes the client sends
_NP = {"FP32": np.float32, "FP16": np.float16}


@dataclass(frozen=True)
class Prediction:
    index: int
    score: float
    label: str


@dataclass(frozen=True)
class Preprocess:
    """How the model wants its pixels: timm's eval transform (resize, center crop, normalize)."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "Preprocess":
        """From the `preprocess.json` export-triton writes beside config.pbtxt (the run's data_config)."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SpvitError(f"cannot read preprocessing from {path} ({type(e).__name__})") from None
        return cls(size=int(d["input_size"][-1]), mean=tuple(d["mean"]), std=tuple(d["std"]),  # type: ignore[arg-type]
                   crop_pct=float(d.get("crop_pct", 0.875)), interpolation=str(d.get("interpolation", "bicubic")))


def preprocess(images: Sequence[Any], pp: Preprocess, dtype: Any = np.float32) -> np.ndarray:
    """PIL images (any mode, any size) -> (B, 3, S, S) normalized batch."""
    from PIL import Image

    resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}.get(pp.interpolation, Image.BICUBIC)
    scale = int(pp.size / pp.crop_pct)
    out = []
    for im in images:
        im = im.convert("RGB")
        w, h = im.size
        r = scale / min(w, h)
        im = im.resize((max(pp.size, round(w * r)), max(pp.size, round(h * r))), resample)
        w, h = im.size
        left, top = (w - pp.size) // 2, (h - pp.size) // 2
        im = im.crop((left, top, left + pp.size, top + pp.size))
        x = np.asarray(im, dtype=np.float32) / 255.0
        out.append(((x - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)).transpose(2, 0, 1))
    return np.stack(out).astype(dtype)


def build_request(batch: np.ndarray, input_name: str, output_name: str, k: int = 5) -> tuple[list[Any], list[Any]]:
    """tritonclient.http inputs and outputs: the batch as binary data, top-k classification asked of Triton."""
    http = require("tritonclient.http", "serve", "tritonclient[http]")
    from tritonclient.utils import np_to_triton_dtype

    inp = http.InferInput(input_name, list(batch.shape), np_to_triton_dtype(batch.dtype))
    inp.set_data_from_numpy(batch, binary_data=True)
    return [inp], [http.InferRequestedOutput(output_name, binary_data=True, class_count=k)]


def parse_classification(result: np.ndarray) -> list[list[Prediction]]:
    """Triton's classification output, (B, k) strings '<value>:<index>[:<label>]', -> predictions."""
    rows = []
    for row in np.asarray(result).reshape(len(result), -1):
        preds = []
        for item in row:
            s = item.decode() if isinstance(item, bytes) else str(item)
            value, index, *label = s.split(":", 2)
            preds.append(Prediction(int(index), float(value), label[0] if label else index))
        rows.append(preds)
    return rows


def topk(logits: np.ndarray, labels: Sequence[str], k: int = 5) -> list[list[Prediction]]:
    """The same top-k from raw logits (what Triton computes server-side); for local checks."""
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [[Prediction(int(i), float(row[i]), labels[i]) for i in ids] for row, ids in zip(logits, idx)]


def classify(url: str, model: str, images: Sequence[Any], pp: Preprocess | None = None, k: int = 5,
             client: Any = None) -> list[list[Prediction]]:
    """Send `images` to `model` on the Triton server at `url` (HTTP) and return top-k per image."""
    if client is None:
        http = require("tritonclient.http", "serve", "tritonclient[http]")
        client = http.InferenceServerClient(url=url)
    try:
        meta = client.get_model_metadata(model)
    except Exception as e:  # connection refused, unknown model: tritonclient raises several types
        raise SpvitError(f"cannot get metadata of '{model}' from {url} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); is the server up and the model loaded?") from None
    inp, out = meta["inputs"][0], meta["outputs"][0]
    pp = pp or Preprocess()
    if pp.size != int(inp["shape"][-1]):
        pp = Preprocess(int(inp["shape"][-1]), pp.mean, pp.std, pp.crop_pct, pp.interpolation)
    batch = preprocess(images, pp, _NP.get(inp["datatype"], np.float32))
    inputs, outputs = build_request(batch, inp["name"], out["name"], k)
    result = client.infer(model, inputs, outputs=outputs)
    return parse_classification(result.as_numpy(out["name"]))


def sample_images() -> list[tuple[str, Any]]:
    """Real photos that ship with scikit-learn (a pagoda and a flower), offline."""
    from PIL import Image

    data = require("sklearn.datasets", "data", "scikit-learn").load_sample_images()
    return [(Path(f).name, Image.fromarray(img)) for f, img in zip(data.filenames, data.images)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spvit_deploy.serve.client", description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="*", help="image files")
    p.add_argument("--url", default="localhost:8000", help="Triton HTTP endpoint")
    p.add_argument("--model", required=True, help="model name in the repository")
    p.add_argument("--preprocess", default=None, help="preprocess.json from the model folder (default: ImageNet)")
    p.add_argument("--samples", action="store_true", help="also send scikit-learn's sample photos")
    p.add_argument("-k", type=int, default=5, help="classes per image")
    args = p.parse_args(argv)
    try:
        from PIL import Image

        named = [(f, Image.open(f)) for f in args.images] + (sample_images() if args.samples else [])
        if not named:
            raise SpvitError("give image files or --samples")
        pp = Preprocess.from_file(args.preprocess) if args.preprocess else None
        results = classify(args.url, args.model, [im for _, im in named], pp, args.k)
    except (SpvitError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for (fname, _), preds in zip(named, results):
        print(fname)
        for pr in preds:
            print(f"  {pr.score:9.4f}  {pr.index:5d}  {pr.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
