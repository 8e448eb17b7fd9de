"""Every command that writes checks its output paths first: a path that cannot be created is one line, at once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from spvit_deploy.cli import COMMANDS, OUTPUT_FILES, main

# each writing command with its other required options; the model/run they name does not exist, so an
# error about the output path proves it was checked before anything was loaded
WRITERS: dict[str, tuple[list[str], str]] = {
    "export": (["--run", "no-such-run"], "--out"),
    "benchmark": (["--run", "no-such-run"], "--out"),
    "build-engine": (["--run", "no-such-run"], "--out"),
    "materialize": (["--model", "deit_t", "--arch", "paper:deit_tiny", "--checkpoint", "missing.pth"], "--out"),
    "export-triton": (["--run", "no-such-run"], "--repo"),
    "import-official": (["missing.pth", "--model", "deit_t", "--arch", "paper:deit_tiny"], "--out"),
    "compress": (["--model", "deit_t", "--data", "no-such-data", "--no-pretrained", "--target-ratio", "0.5"], "--out"),
    "search": (["--model", "deit_t", "--data", "no-such-data", "--no-pretrained", "--target-ratio", "0.5"], "--out"),
    "finetune": (["--model", "deit_t", "--data", "no-such-data", "--no-pretrained"], "--out"),
    "demo": ([], "--out"),
    "profile-latency": (["--model", "no-such-model"], "--out"),
}


def test_every_writing_command_is_covered() -> None:
    assert set(WRITERS) == set(COMMANDS) - {"arch-stats", "verify"}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_unwritable_output_is_one_line(command: str, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    extra, option = WRITERS[command]
    assert main([command, *extra, option, str(blocker / "sub" / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot write {option}" in err and "is a file, not a folder" in err
    assert "\n" not in err and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["a-file"]  # nothing created


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_export_to_proc_is_one_line(capsys) -> None:
    assert main(["export", "--run", "no-such-run", "--out", "/proc/x/m.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spvit-deploy export: error: cannot write --out '/proc/x/m.onnx'") and "\n" not in err


@pytest.mark.parametrize("command, option", [(c, o) for c, opts in OUTPUT_FILES.items() for o in opts])
def test_file_outputs_refuse_a_folder(command: str, option: str, tmp_path: Path, capsys) -> None:
    extra = {"export": ["--run", "r"], "build-engine": ["--run", "r"],
             "import-official": ["--model", "deit_t", "--search-ckpt", "s.pth"],
             "profile-latency": ["--model", "deit_t"]}[command]
    flag = "--" + option.replace("_", "-")
    argv = [command, *extra, flag, str(tmp_path)]
    if flag != "--out" and command == "build-engine":
        argv += ["--out", str(tmp_path / "m.plan")]
    assert main(argv) == 2
    assert "exists and is a folder" in capsys.readouterr().err


def test_writable_paths_pass(tmp_path: Path) -> None:
    from spvit_deploy._io import check_writable

    assert check_writable(tmp_path / "new" / "deeper" / "m.onnx") == tmp_path / "new" / "deeper" / "m.onnx"
    check_writable(tmp_path / "run", folder=True)
    check_writable(tmp_path, folder=True)
    assert os.listdir(tmp_path) == []


def test_atomic_write_to_an_impossible_path_is_a_spvit_error(tmp_path: Path) -> None:
    from spvit_deploy._io import write_text
    from spvit_deploy.errors import SpvitError

    (tmp_path / "f").write_text("")
    with pytest.raises(SpvitError, match="cannot write"):
        write_text(tmp_path / "f" / "x.txt", "hi")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_python_api_checks_the_output_before_the_work() -> None:
    import torch

    from spvit_deploy.bench.harness import benchmark
    from spvit_deploy.errors import SpvitError
    from spvit_deploy.export.onnx import export_onnx

    with pytest.raises(SpvitError, match="cannot write --out '/proc/x/m.onnx'"):
        export_onnx(torch.nn.Linear(1, 1), "/proc/x/m.onnx")  # not a ViT: it would fail later, not here
    with pytest.raises(SpvitError, match="cannot write --out '/proc/x'"):
        benchmark("/proc/x", run="no-such-run")
