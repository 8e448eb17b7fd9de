"""compress/search/finetune/demo from the command line: bad input gives one line and exit status 2."""
from __future__ import annotations

import json
import shutil

import pytest

from spvit_deploy.cli import main
from spvit_deploy.train.config import config_for

from train_testing import NANO, run_cli


def base(data, out) -> list[str]:
    return ["compress", "--model", NANO, "--data", str(data), "--no-pretrained", "--out", str(out)]


@pytest.fixture
def empty_class(digits, tmp_path):
    root = tmp_path / "empty_class"
    shutil.copytree(digits, root)
    (root / "train" / "7").mkdir(exist_ok=True)
    for f in (root / "train" / "7").iterdir():
        f.unlink()
    return root


@pytest.mark.parametrize("case, extra, message", [
    ("missing data", ["--target-ratio", "0.5"], "data folder '{tmp}/nowhere' does not exist"),
    ("empty class", ["--target-ratio", "0.5"], "class folder '{tmp}/empty_class/train/7' has no images"),
    ("above dense", ["--target-gmacs", "1.0"], "is above the dense model's 0.02261 GMACs"),
    ("unreachable", ["--target-gmacs", "0.0001"], "is below the smallest reachable 0.0001972 GMACs"),
    ("unknown model", ["--target-ratio", "0.5"], "unknown model 'deit_x'"),
    ("damaged checkpoint", ["--target-ratio", "0.5"], "cannot read checkpoint '{tmp}/bad.pth'"),
])
def test_bad_input_is_one_line(digits, empty_class, tmp_path, capsys, case, extra, message) -> None:
    data = {"missing data": tmp_path / "nowhere", "empty class": empty_class}.get(case, digits)
    argv = base(data, tmp_path / "out") + extra
    if case == "unknown model":
        argv[argv.index(NANO)] = "deit_x"
    if case == "damaged checkpoint":  # read before the run folder is written
        (tmp_path / "bad.pth").write_text("garbage")
        argv[argv.index("--no-pretrained")] = "--checkpoint"
        argv.insert(argv.index("--checkpoint") + 1, str(tmp_path / "bad.pth"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(tmp=tmp_path) in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_run_is_never_overwritten_or_resumed_with_other_settings(digits, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    cfg = config_for(NANO, str(digits), target_ratio=0.5, search_lr=1e-3)
    (out / "checkpoints" / "search.json").write_text(json.dumps(cfg.to_dict()))
    assert main(base(digits, out) + ["--target-ratio", "0.5"]) == 2
    assert "already holds a search run; pass --resume" in capsys.readouterr().err
    assert main(base(digits, out) + ["--target-ratio", "0.5", "--lr", "2e-3", "--resume"]) == 2
    assert "cannot resume the search stage" in capsys.readouterr().err


def test_no_traceback_in_a_real_process(tmp_path) -> None:
    r = run_cli(base(tmp_path / "nowhere", tmp_path / "out") + ["--target-ratio", "0.5"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
