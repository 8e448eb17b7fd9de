"""Real images for the lossy checks (fp16, TensorRT): the demo's data, scikit-learn's handwritten
digits, upsampled to the model's input size, grey to three channels, normalised with its mean/std.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import require


def demo_images(n: int, img_size: int, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                seed: int = 0) -> np.ndarray:
    """(n, 3, img_size, img_size) float32: `n` digits (every class in turn), bicubic-resized like the demo."""
    return demo_samples(n, img_size, mean, std, seed)[0]


def demo_samples(n: int, img_size: int, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`demo_images` and their labels (int64)."""
    datasets = require("sklearn.datasets", "data", "scikit-learn")
    image = require("PIL.Image", "data", "pillow")
    digits = datasets.load_digits()
    rng = np.random.default_rng(seed)
    by_class = [list(rng.permutation(np.flatnonzero(digits.target == c))) for c in range(10)]
    order = [int(cls[i]) for i in range(max(map(len, by_class))) for cls in by_class if i < len(cls)]
    if not 0 < n <= len(order):
        raise ValueError(f"there are {len(order)} digits; asked for {n}")
    picks = order[:n]
    out = np.empty((n, 3, img_size, img_size), np.float32)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    for j, i in enumerate(picks):
        pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
        img = np.asarray(image.fromarray(pixels, mode="L").resize((img_size, img_size), image.BICUBIC), np.float32)
        out[j] = (np.repeat(img[None] / 255.0, 3, axis=0) - m) / s
    return out, digits.target[picks].astype(np.int64)
