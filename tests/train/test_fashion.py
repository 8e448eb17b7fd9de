"""Fashion-MNIST as a data source: real-format IDX files written here (the Debian package is not
needed), read through torchvision; `--data fashion-mnist[:DIR]` in the CLI; missing data is one line
naming the apt package; the package's real files where it is installed."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from spvit_deploy.cli import main
from spvit_deploy.errors import SpvitError
from spvit_deploy.train import fashion
from spvit_deploy.train.config import DataConfig
from spvit_deploy.train.folders import check_image_folder

from train_testing import NANO, run_cli

REAL = fashion.DEFAULT_DIR


def arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPVIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def idx(tmp_path):
    """40 train / 20 test random images in the four gzipped IDX files."""
    folder = tmp_path / "fm"
    fashion.write_idx_folder(folder, arrays(40, 0), arrays(20, 1))
    return folder


def test_idx_files_have_the_standard_header(idx) -> None:
    with gzip.open(idx / "train-images-idx3-ubyte.gz") as f:
        assert struct.unpack(">HBBIII", f.read(16)) == (0, 8, 3, 40, 28, 28)
    with gzip.open(idx / "t10k-labels-idx1-ubyte.gz") as f:
        assert struct.unpack(">HBBI", f.read(8)) == (0, 8, 1, 20)


def test_torchvision_reads_the_folder(idx, tmp_path) -> None:
    got = fashion.read_arrays(idx)
    for split, seed, n in (("train", 0, 40), ("test", 1, 20)):
        x, y = arrays(n, seed)
        assert np.array_equal(got[split][0], x) and np.array_equal(got[split][1], y)
    assert len(list((tmp_path / "cache" / "fashion-mnist").iterdir())) == 1  # decompressed once, reused
    fashion.read_arrays(idx)
    assert len(list((tmp_path / "cache" / "fashion-mnist").iterdir())) == 1


def test_uncompressed_files_are_accepted(idx) -> None:
    for name in fashion.FILES:
        (idx / name).write_bytes(gzip.decompress((idx / f"{name}.gz").read_bytes()))
        (idx / f"{name}.gz").unlink()
    assert np.array_equal(fashion.read_arrays(idx)["test"][0], arrays(20, 1)[0])


def test_build_data_gives_model_sized_rgb_batches(idx) -> None:
    from spvit_deploy.models import create_dense
    from spvit_deploy.train.data import build_data

    model = create_dense(NANO, num_classes=10, img_size=28)
    data = build_data(DataConfig(root=f"fashion-mnist:{idx}", batch_size=8, hflip=0.0, color_jitter=0.0), model, 0)
    assert data.classes == list(fashion.CLASSES) and len(data.val) == 20 and data.steps_per_epoch == 5
    x, y = next(iter(data.train_loader(0)))
    assert x.shape == (8, 3, 28, 28) and y.dtype.is_floating_point is False
    xv, yv = next(iter(data.val_loader()))
    assert xv.shape[1:] == (3, 28, 28) and yv.tolist()[:10] == list(range(10))
    assert float(xv[0].std()) > 0.1  # the pixels arrive, normalized


def test_missing_files_are_one_line_naming_the_package(idx, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fashion, "DEFAULT_DIR", tmp_path / "not-installed")
    with pytest.raises(SpvitError, match="apt-get install dataset-fashion-mnist"):
        check_image_folder("fashion-mnist")
    (idx / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SpvitError, match="lacks t10k-labels-idx1-ubyte"):
        check_image_folder(f"fashion-mnist:{idx}")
    with pytest.raises(SpvitError, match="names no folder"):
        fashion.parse_source("fashion-mnist:")
    assert fashion.parse_source(str(tmp_path)) is None  # an ImageFolder path stays one


def test_a_truncated_file_is_one_line(idx) -> None:
    raw = gzip.decompress((idx / "train-images-idx3-ubyte.gz").read_bytes())
    (idx / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:1000]))
    with pytest.raises(SpvitError, match="cannot read the Fashion-MNIST files"):
        fashion.read_arrays(idx)


def test_compress_without_the_package_is_one_line_in_a_real_process(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    r = run_cli(["compress", "--model", NANO, "--data", f"fashion-mnist:{missing}", "--no-pretrained",
                 "--target-ratio", "0.5", "--out", str(tmp_path / "out")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"'{missing}' is not there" in r.stderr and "dataset-fashion-mnist" in r.stderr
    assert not (tmp_path / "out").exists()


def test_compress_trains_on_fashion_mnist_files(idx, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(idx.parent)  # a relative DIR is recorded absolute
    out = tmp_path / "run"
    argv = ["compress", "--model", NANO, "--img-size", "28", "--data", "fashion-mnist:fm", "--no-pretrained",
            "--target-ratio", "0.6", "--out", str(out), "--search-epochs", "1", "--finetune-epochs", "1",
            "--batch-size", "20", "--amp", "none", "--no-progress", "--json", "--threads", "1"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["compressed"]["gmacs"] <= 0.6 * rep["dense"]["gmacs"] * 1.02
    assert json.loads((out / "config.json").read_text())["data"]["root"] == f"fashion-mnist:{idx}"


def test_subset_is_stratified_disjoint_and_idempotent(tmp_path) -> None:
    src = tmp_path / "src"
    fashion.write_idx_folder(src, arrays(100, 2), arrays(20, 3))
    info = fashion.write_subset(src, tmp_path / "sub", train_per_class=6, val_per_class=3, seed=0)
    got = fashion.read_arrays(tmp_path / "sub")
    assert info["train"] == 60 and info["val"] == 30 and np.bincount(got["train"][1]).tolist() == [6] * 10
    rows = {x.tobytes() for x in got["train"][0]}
    assert not rows & {x.tobytes() for x in got["test"][0]}  # validation held out from the training images
    assert rows <= {x.tobytes() for x in arrays(100, 2)[0]}
    assert fashion.write_subset(src, tmp_path / "sub", 6, 3, 0) == info
    with pytest.raises(SpvitError, match="another Fashion-MNIST subset"):
        fashion.write_subset(src, tmp_path / "sub", 5, 3, 0)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"the Debian package dataset-fashion-mnist is not installed ({REAL})")
def test_the_packaged_files() -> None:
    got = fashion.read_arrays(REAL)
    (x, y), (xt, yt) = got["train"], got["test"]
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert check_image_folder("fashion-mnist") == list(fashion.CLASSES)
