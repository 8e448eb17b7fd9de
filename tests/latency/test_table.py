"""The latency table: round trip, validation (one line per problem) and refusal of a table from another
machine or runtime."""
from __future__ import annotations

import copy
import json

import pytest

from spvit_deploy.errors import SpvitError
from spvit_deploy.latency.table import LatencyTable, check_compatible, here_fingerprint, load_lut

from latency_testing import fake_lut_dict


def test_round_trip(tmp_path) -> None:
    lut = LatencyTable.from_dict(fake_lut_dict((1, 16)))
    lut.save(tmp_path / "lut.json")
    again = load_lut(tmp_path / "lut.json")
    assert again == lut and again.to_dict() == fake_lut_dict((1, 16))
    assert again.table(16).fixed_ms == 16.0 and again.group_of_block() == [0] * 6
    with pytest.raises(SpvitError, match=r"batch sizes \[1, 16\], not 4"):
        again.table(4)


def _broken(change) -> dict:
    d = copy.deepcopy(fake_lut_dict())
    change(d)
    return d


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(kind="other"), "not a latency table"),
    (lambda d: d.update(lut_version=7), "lut_version 7 is not supported"),
    (lambda d: d.update(extra=1), "unknown keys ['extra']"),
    (lambda d: d.pop("threads"), "missing keys ['threads']"),
    (lambda d: d.update(threads=0), "'threads' must be a positive integer"),
    (lambda d: d["groups"][0].update(widths=[0, 128, 64, 256]), "must start at 0 and increase"),
    (lambda d: d["groups"][0].update(widths=[0, 64, 200]), "must end at the dense width"),
    (lambda d: d["groups"][0].update(blocks=[0, 1, 2, 3, 4, 4]), "cover blocks 0..depth-1 once each"),
    (lambda d: d["batches"]["1"]["groups"][0]["attn_ms"].pop("conv1x1"), "'attn_ms' must give a number"),
    (lambda d: d["batches"]["1"]["groups"][0].update(ffn_ms=[0.0, 1.0]), "one number per width"),
    (lambda d: d["batches"]["1"].update(fixed_ms=-1), "must be positive numbers"),
    (lambda d: d["batches"]["1"].update(batch=2), "'batch' is 2"),
])
def test_malformed_tables_are_one_line_errors(tmp_path, change, message) -> None:
    p = tmp_path / "lut.json"
    p.write_text(json.dumps(_broken(change)))
    with pytest.raises(SpvitError) as e:
        load_lut(p)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(SpvitError, match="does not exist"):
        load_lut(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpvitError, match="not readable JSON"):
        load_lut(tmp_path / "bad.json")


def test_a_table_from_another_machine_or_runtime_is_refused() -> None:
    lut = LatencyTable.from_dict(fake_lut_dict())
    here = here_fingerprint("onnxruntime", 2, "fp32")
    assert check_compatible(lut, here) == []
    for key, value, what in [("cpu_model", "Some Other CPU", "CPU"), ("cpu_flags", ["neon"], "CPU flags"),
                             ("threads", 8, "threads"), ("backend", "torch", "backend"),
                             ("precision", "fp16", "precision")]:
        with pytest.raises(SpvitError) as e:
            check_compatible(lut, {**here, key: value})
        assert f"measured with {what}" in str(e.value) and "\n" not in str(e.value)
    ort = here["libraries"]["onnxruntime"]
    major, minor, *_ = ort.split(".")
    with pytest.raises(SpvitError, match="measured with onnxruntime"):  # another minor version: other kernels
        check_compatible(lut, {**here, "libraries": {**here["libraries"], "onnxruntime": f"{major}.{int(minor) + 1}.0"}})
    patch = {**here, "libraries": {**here["libraries"], "onnxruntime": f"{major}.{minor}.99"}}
    if patch["libraries"]["onnxruntime"] != ort:  # a patch release: used, with a warning
        warns = check_compatible(lut, patch)
        assert len(warns) == 1 and "same minor version" in warns[0]


def test_the_package_is_lazy_and_exports_what_its_modules_define() -> None:
    import importlib
    import subprocess
    import sys

    code = "import sys, spvit_deploy.latency\nprint([m for m in ('torch', 'onnxruntime', 'timm') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    pkg = importlib.import_module("spvit_deploy.latency")
    for name, module in pkg._EXPORTS.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(f"spvit_deploy.latency.{module}"), name)
