"""The CLI: JSON shapes, exit codes, one-line errors without tracebacks."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spvit_deploy.cli import main


def test_arch_stats_json(capsys) -> None:
    assert main(["arch-stats", "--model", "deit_b", "--arch", "paper:deit_base", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"dense", "compressed", "blocks"}
    assert isinstance(out["dense"]["gmacs"], float) and isinstance(out["compressed"]["params"], int)


def test_arch_stats_table(capsys) -> None:
    assert main(["arch-stats", "--model", "deit_t", "--arch", "paper:deit_tiny"]) == 0
    assert "compressed:" in capsys.readouterr().out


def test_verify_json(capsys) -> None:
    rc = main(["verify", "--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "64", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] is True
    assert [c["stage"] for c in out["checks"]] == ["supernet", "materialize"]
    assert all(c["max_abs_diff"] <= 1e-5 for c in out["checks"])


def test_materialize_writes_run(tmp_path, capsys) -> None:
    from spvit_deploy.run import load_run

    out = tmp_path / "run"
    rc = main(["materialize", "--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "64", "--out", str(out), "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["run"] == str(out)
    assert load_run(out).spec.ops[:2] == ["conv1x1", "conv1x1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["arch-stats", "--model", "deit_x", "--arch", "paper:deit_tiny"], "unknown model 'deit_x'"),
        (["arch-stats", "--model", "deit_s", "--arch", "paper:deit_tiny"], "not 'deit_s'"),
        (["verify", "--model", "deit_t", "--arch", "missing.json"], "not found"),
        (["verify", "--model", "deit_t", "--arch", "paper:deit_tiny", "--checkpoint", "missing.pth"], "does not exist"),
        (["verify", "--model", "deit_t", "--arch", "paper:deit_tiny", "--stages", "warp"], "unknown verify stage"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_no_traceback_in_a_real_process(tmp_path) -> None:
    bad = tmp_path / "arch.json"
    bad.write_text('{"schema_version": 1, "model": "deit_tiny_patch16_224", "img_size": 224, '
                   '"num_classes": 1000, "blocks": [{"attn": "conv7x7", "ffn_kept": []}]}')
    r = subprocess.run([sys.executable, "-m", "spvit_deploy.cli", "arch-stats", "--model", "deit_t", "--arch", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown op 'conv7x7'" in r.stderr and "Traceback" not in r.stderr


def test_every_command_takes_the_model_options_from_one_group() -> None:
    from spvit_deploy.cli import build_parser
    from spvit_deploy.cli.common import model_source
    from spvit_deploy.model_source import ModelSource

    parser = build_parser()
    argv = {
        "export": ["--model", "deit_t", "--arch", "paper:deit_tiny", "--checkpoint", "w.pth", "--img-size", "64",
                   "--out", "m.onnx"],
        "benchmark": ["--run", "RUN", "--out", "bench"],
        "verify": ["--model", "deit_t", "--arch", "paper:deit_tiny", "--checkpoint", "w.pth", "--img-size", "64"],
        "arch-stats": ["--model", "deit_t", "--arch", "paper:deit_tiny", "--num-classes", "10"],
        "materialize": ["--model", "deit_t", "--arch", "paper:deit_tiny", "--checkpoint", "w.pth", "--out", "run"],
        "compress": ["--model", "deit_t", "--data", "d", "--checkpoint", "w.pth", "--target-ratio", "0.5",
                     "--img-size", "64", "--out", "run"],
    }
    got = {cmd: model_source(parser.parse_args([cmd, *a])) for cmd, a in argv.items()}
    assert got["export"] == ModelSource(model="deit_t", arch="paper:deit_tiny", checkpoint="w.pth", img_size=64)
    assert got["benchmark"] == ModelSource(run="RUN")
    assert got["verify"] == ModelSource(model="deit_t", arch="paper:deit_tiny", checkpoint="w.pth", img_size=64)
    assert got["arch-stats"] == ModelSource(model="deit_t", arch="paper:deit_tiny", num_classes=10)
    assert got["materialize"].checkpoint == "w.pth" and got["compress"].img_size == 64
    with pytest.raises(SystemExit):  # one weight source at a time
        parser.parse_args(["materialize", *argv["materialize"], "--supernet", "s.safetensors"])
