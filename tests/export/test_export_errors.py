"""Bad input to `spvit-deploy export`: exit status 2, one line on stderr, no traceback, no file."""
from __future__ import annotations

import pytest

from spvit_deploy.cli import main


@pytest.mark.parametrize("args, needle", [
    (["--run", "{tmp}/missing"], "does not exist"),
    (["--model", "deit_t"], "--arch"),
    (["--run", "{tmp}", "--model", "deit_t", "--arch", "paper:deit_tiny"], "not both"),
    ([], "--run"),
    (["--model", "deit_t", "--arch", "paper:deit_small"], "spec is for model"),
    (["--model", "deit_t", "--arch", "{tmp}/nope.json"], "not found"),
    (["--model", "nope_vit", "--arch", "paper:deit_tiny"], "unknown model"),
    (["--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "32", "--opset", "12"], "--opset"),
])
def test_bad_input_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "model.onnx"
    argv = ["export", *[a.format(tmp=tmp_path) for a in args], "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("spvit-deploy export: error:") and needle in err
    assert "Traceback" not in err and not out.exists()


def test_out_is_a_folder(tmp_path, capsys):
    assert main(["export", "--model", "deit_t", "--arch", "paper:deit_tiny", "--img-size", "32",
                 "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
