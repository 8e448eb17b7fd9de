"""Fashion-MNIST as a training data source: `--data fashion-mnist` (Debian's `dataset-fashion-mnist`
files under /usr/share/datasets/fashion-mnist/) or `--data fashion-mnist:DIR` (any folder with the
four IDX files, `.gz` or not). train = the 60k training images, val = the official 10k test set.

torchvision's `FashionMNIST` reads the files; the only adapter is its folder layout: the four files
are decompressed once into a cache folder `<cache>/FashionMNIST/raw/` (keyed by the source files'
paths, sizes and times). `write_idx_folder` writes the four files from arrays (tests, subsets).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpvitError

PREFIX = "fashion-mnist"
PACKAGE = "dataset-fashion-mnist"
DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def parse_source(root: str | os.PathLike[str]) -> Path | None:
    """The folder a `fashion-mnist[:DIR]` data argument names; None for anything else (an ImageFolder)."""
    s = os.fspath(root)
    if s == PREFIX:
        return DEFAULT_DIR
    if s.startswith(PREFIX + ":"):
        d = s[len(PREFIX) + 1:]
        if not d:
            raise SpvitError(f"--data {PREFIX}: names no folder; give --data {PREFIX} or --data {PREFIX}:DIR")
        return Path(d).expanduser()
    return None


def source_files(folder: Path) -> dict[str, Path]:
    """The four IDX files in `folder` (each `name` or `name.gz`); a one-line error naming the package if any is missing."""
    found: dict[str, Path] = {}
    for name in FILES:
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.is_file():
                found[name] = cand
                break
    missing = [n for n in FILES if n not in found]
    if missing:
        hint = (f"install it with: apt-get install {PACKAGE}" if folder == DEFAULT_DIR
                else f"give a folder with the four IDX files ({PACKAGE} installs them under {DEFAULT_DIR})")
        what = "is not there" if not folder.is_dir() else f"lacks {missing[0]}[.gz]"
        raise SpvitError(f"Fashion-MNIST data folder '{folder}' {what}; {hint}")
    return found


def check_fashion(folder: Path) -> list[str]:
    """The class names, after checking that the four files are there (no decompression)."""
    source_files(folder)
    return list(CLASSES)


def cache_root() -> Path:
    return Path(os.environ.get("SPVIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "spvit-deploy")


def torchvision_root(folder: Path) -> Path:
    """A folder torchvision's `FashionMNIST(root)` reads: the four files decompressed into
    `<root>/FashionMNIST/raw/`, made once per source (atomically, by rename)."""
    from torchvision.datasets.utils import extract_archive

    files = source_files(folder)
    key = hashlib.sha256()
    for name in FILES:
        st = files[name].stat()
        key.update(f"{files[name].resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    root = cache_root() / PREFIX / key.hexdigest()[:16]
    if (root / "FashionMNIST" / "raw").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
    try:
        raw = tmp / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for name, path in files.items():
            if path.suffix == ".gz":
                extract_archive(str(path), str(raw))
            else:
                shutil.copyfile(path, raw / name)
        try:
            os.rename(tmp, root)
        except OSError:  # another process made it first
            if not (root / "FashionMNIST" / "raw").is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def to_rgb(img: Any) -> Any:
    """The grey PIL image as RGB (what ImageFolder's loader gives; timm's transforms expect 3 channels)."""
    return img.convert("RGB")


def fashion_datasets(folder: Path, train_transform: Any = to_rgb, val_transform: Any = to_rgb) -> tuple[Any, Any]:
    """(train, test) torchvision `FashionMNIST` datasets of the files in `folder`."""
    from torchvision.datasets import FashionMNIST

    root = str(torchvision_root(folder))
    try:
        train = FashionMNIST(root, train=True, transform=train_transform, download=False)
        test = FashionMNIST(root, train=False, transform=val_transform, download=False)
    except Exception as e:  # a truncated or foreign file: torchvision's parser says what
        raise SpvitError(f"cannot read the Fashion-MNIST files in '{folder}' ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
    return train, test


def read_arrays(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images (N, 28, 28) uint8, labels (N,) int64), "test": ...} through torchvision."""
    train, test = fashion_datasets(folder, None, None)
    return {"train": (train.data.numpy(), train.targets.numpy()), "test": (test.data.numpy(), test.targets.numpy())}


def _idx_bytes(arr: np.ndarray) -> bytes:
    """IDX: two zero bytes, type 0x08 (uint8), the number of dimensions, big-endian sizes, the data."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_folder(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> None:
    """Write the four gzipped IDX files (images (N, H, W) uint8, labels (N,)) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, (x, y) in (("train", train), ("t10k", test)):
        if len(x) != len(y):
            raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            with open(folder / f"{split}-{kind}-ubyte.gz", "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as f:
                f.write(_idx_bytes(arr))


def write_subset(source: Path, dest: Path, train_per_class: int, val_per_class: int = 0, seed: int = 0) -> dict[str, Any]:
    """A stratified, seeded subset of the training set as four IDX files in `dest`: `train_per_class`
    images per class as its training set and, with `val_per_class`, another disjoint `val_per_class`
    per class from the training set as its test files (a validation split; the official test set
    stays untouched), else the whole official test set. Idempotent: `subset.json` records what was written."""
    import json

    from .._io import write_json

    want = {"source": str(source), "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    marker = dest / "subset.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if all(done.get(k) == v for k, v in want.items()):
            return done
        raise SpvitError(f"'{dest}' holds another Fashion-MNIST subset ({marker}); use another folder")
    arrays = read_arrays(source)
    x, y = arrays["train"]
    rng = np.random.default_rng(seed)
    perm = [rng.permutation(np.flatnonzero(y == c)) for c in range(10)]
    need = train_per_class + val_per_class
    if any(len(p) < need for p in perm):
        raise SpvitError(f"'{source}' has fewer than {need} training images in some class")
    train_idx = np.sort(np.concatenate([p[:train_per_class] for p in perm]))
    val_idx = np.sort(np.concatenate([p[train_per_class:need] for p in perm]))
    test = (x[val_idx], y[val_idx]) if val_per_class else arrays["test"]
    write_idx_folder(dest, (x[train_idx], y[train_idx]), test)
    info = {**want, "train": int(len(train_idx)), "val": int(len(test[1])),
            "val_is": "held out from the training set" if val_per_class else "the official test set",
            "train_sha256": hashlib.sha256(train_idx.astype(np.int64).tobytes()).hexdigest(),
            "val_sha256": hashlib.sha256(val_idx.astype(np.int64).tobytes()).hexdigest()}
    write_json(marker, info)
    return info
