"""The latency-targeted demo (`demo --target-speedup R`): the quick demo end to end as a user runs it (a made-up
table, the derivation calibrated and the result measured by timing on ONNX Runtime; slow). Bad targets are
one line and exit status 2 with nothing written; a folder of one demo mode is refused by the other; the table in
the folder is reused only when it fits this machine (these with a made-up table, no timing)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from spvit_deploy.cli import main

from latency_testing import fake_lut_dict


class FakeProfile:
    """Stands in for `profile_latency`: writes the made-up nano table (batch 16, this machine) and counts calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...], int | None]] = []

    def __call__(self, model, out, *, backend="onnxruntime", batches=(1,), num_classes=None, **kw):
        self.calls.append((backend, tuple(batches), num_classes))
        Path(out).write_text(json.dumps(fake_lut_dict(tuple(batches))))


def one_line_error(capsys, argv, message) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err, err


def test_a_folder_of_one_demo_mode_is_refused_by_the_other(tmp_path, capsys) -> None:
    """What each mode's compress writes first, its `run/config.json` (MACs or speedup target), or the table of a
    latency-targeted demo stopped before its run, makes the other mode (or another speedup) refuse the folder."""
    from spvit_deploy._io import write_json
    from spvit_deploy.demo import QUICK, demo_config, latency_config

    def folder(name: str, speedup: float | None) -> Path:
        out = tmp_path / name
        cfg = demo_config(out / "data", QUICK, out / "teacher" / "model.safetensors", 0)
        cfg = latency_config(cfg, out / "lut.json", speedup) if speedup else cfg
        write_json(out / "run" / "config.json", cfg.to_dict())
        return out

    lat, plain = folder("lat", 1.3), folder("plain", None)
    one_line_error(capsys, ["demo", "--out", str(lat), "--quick"],
                   "holds a latency-targeted demo (--target-speedup 1.3); use another --out for the plain demo")
    one_line_error(capsys, ["demo", "--out", str(lat), "--quick", "--target-speedup", "1.4"],
                   "holds the demo for --target-speedup 1.3; use another --out for --target-speedup 1.4")
    one_line_error(capsys, ["demo", "--out", str(plain), "--quick", "--target-speedup", "1.5"],
                   "holds the plain demo (a MACs target); use another --out for --target-speedup 1.5")
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "lut.json").write_text(json.dumps(fake_lut_dict((16,))))
    one_line_error(capsys, ["demo", "--out", str(stopped), "--quick"],
                   "holds a latency-targeted demo (--target-speedup); use another --out")
    for out in (lat, plain, stopped):  # nothing was written
        assert sorted(p.name for p in out.rglob("*")) == (["lut.json"] if out == stopped else ["config.json", "run"])


@pytest.mark.parametrize("speedup, message", [
    ("0.5", "is slower than the dense model"),
    ("100", "is faster than the fastest reachable"),
    ("0", "--target-speedup 0 must be positive"),
    ("-1.5", "--target-speedup -1.5 must be positive"),
])
def test_demo_bad_target_speedup(tmp_path, capsys, monkeypatch, speedup, message) -> None:
    """Refused with compress's own checks, after profiling (into a temporary folder) and before anything is
    written; a table already in the folder is checked the same way and left alone."""
    fake = FakeProfile()
    monkeypatch.setattr("spvit_deploy.latency.profile.profile_latency", fake)
    out = tmp_path / "demo"
    one_line_error(capsys, ["demo", "--out", str(out), "--no-progress", "--target-speedup", speedup], message)
    assert not out.exists() and len(fake.calls) == (0 if "positive" in message else 1)
    out.mkdir()
    (out / "lut.json").write_text(json.dumps(fake_lut_dict((16,))))
    one_line_error(capsys, ["demo", "--out", str(out), "--no-progress", "--target-speedup", speedup], message)
    assert sorted(p.name for p in out.iterdir()) == ["lut.json"] and len(fake.calls) <= 1


def test_demo_table_is_reused_only_when_it_fits_here(tmp_path, monkeypatch) -> None:
    """A table from another CPU, or without batch 16, in the folder is profiled again; a fitting one is reused."""
    from spvit_deploy.demo import QUICK, demo_config, latency_table
    from spvit_deploy.latency.table import here_fingerprint

    fake = FakeProfile()
    monkeypatch.setattr("spvit_deploy.latency.profile.profile_latency", fake)
    cfg = demo_config(tmp_path / "data", QUICK, tmp_path / "w", 0)
    lut, lines = tmp_path / "lut.json", []
    lut.write_text(json.dumps(fake_lut_dict((16,))))
    assert latency_table(tmp_path, cfg, 1.5, lines.append, False) is False and fake.calls == []
    foreign = {**fake_lut_dict((16,)), "environment": {**here_fingerprint("onnxruntime", 2, "fp32"), "cpu_model": "X"}}
    for other in (foreign, fake_lut_dict((1,))):
        lut.write_text(json.dumps(other))
        assert latency_table(tmp_path, cfg, 1.5, lines.append, False) is True
        assert json.loads(lut.read_text()) == fake_lut_dict((16,))
    assert len(fake.calls) == 2 and "does not fit here" in lines[1] and "CPU 'X'" in lines[1]


@pytest.fixture(scope="module")
def quick_latency_demo(tmp_path_factory):
    """The quick latency-targeted demo (1.3x) from the command line: (folder, report, stdout). The table is the
    made-up one (profiling the nano model for real takes a minute; the table's arithmetic is tested with known
    timings in test_latency_cli.py), everything after it is real: the calibration times its candidates against
    the dense model on ONNX Runtime and corrects the made-up table with what it measured, and the fine-tuned
    network is measured (one timing session each; the median over sessions is tested in test_measure.py)."""
    out = tmp_path_factory.mktemp("latdemo") / "demo"
    printed = io.StringIO()
    fake = FakeProfile()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr("spvit_deploy.latency.profile.profile_latency", fake)
        mp.setattr("spvit_deploy.latency.measure.SESSIONS", 1)  # one timing session per measurement (test time)
        mp.setattr("spvit_deploy.latency.calibrate.MAX_ITERS", 2)  # at most two candidates timed (test time)
        rc = main(["demo", "--out", str(out), "--quick", "--no-export", "--no-progress", "--target-speedup", "1.3"])
    assert rc == 0 and fake.calls == [("onnxruntime", (16,), 10)]
    return out, json.loads((out / "report.json").read_text()), printed.getvalue()


@pytest.mark.slow
def test_quick_latency_demo_reports_target_predicted_and_measured_speedup(quick_latency_demo) -> None:
    out, rep, printed = quick_latency_demo
    lut = json.loads((out / "lut.json").read_text())  # the table (made up here), ONNX Runtime at batch 16
    assert (lut["backend"], list(lut["batches"]), lut["num_classes"]) == ("onnxruntime", ["16"], 10)
    cfg = json.loads((out / "run" / "config.json").read_text())
    assert (cfg["target_speedup"], cfg["target_ratio"], cfg["latency_batch"]) == (1.3, 0.0, 16)
    run_lat = json.loads((out / "run" / "report.json").read_text())["latency"]
    lat = rep["latency"]
    assert (lat["backend"], lat["batch"], lat["target_speedup"]) == ("onnxruntime", 16, 1.3)
    m = lat["measured"]  # the fine-tuned network timed against the dense one, interleaved
    assert m["dense_ms"] > 0 and m["compressed_ms"] > 0 and m["speedup"] == run_lat["measured"]["speedup"]
    assert m["speedup"] == pytest.approx(m["dense_ms"] / m["compressed_ms"], rel=0.25)
    assert m["speedup"] > 1.0  # the compressed network is faster than the dense one
    assert lat["miss"] == pytest.approx(m["speedup"] / 1.3 - 1, abs=1e-4)
    assert lat["predicted_speedup"] == run_lat["predicted_speedup"] > 1.0
    cal = lat["calibration"]
    assert 1 <= cal["timed"] <= 2 and cal["max_iters"] == 2 and cal["iterations"][cal["chosen"]]["measured_speedup"] > 1.0
    assert all(i["measured_dense_ms"] > 0 and i["measured_ms"] > 0 for i in cal["iterations"])
    assert run_lat["measured"]["sessions"] == 1 and run_lat["calibration"] == cal
    assert run_lat["measured_speedup_vs_target"] == pytest.approx(m["speedup"] / 1.3 - 1, abs=1e-3)
    arch = json.loads((out / "run" / "arch.json").read_text())  # the calibration is recorded with the architecture
    assert arch["extra"]["latency_calibration"]["chosen"] == cal["chosen"]
    c, d = rep["compressed"], rep["dense"]
    assert c["macs_ratio"] == pytest.approx(c["gmacs"] / d["gmacs"], abs=1e-4) and c["macs_ratio"] < 1.0
    assert c["target_ratio"] is None and 0 <= c["top1"] <= 100 and rep["seconds"] > 0
    assert set(rep["sessions"][0]["parts"]) >= {"latency_table", "data", "teacher", "compress"}
    md = (out / "report.md").read_text()
    assert "to a latency target" in md and f"| measured (dense and compressed timed interleaved, after fine-tuning) " \
        f"| {m['speedup']:.3f}x |" in md and f"{100 * lat['miss']:+.1f}% off the target" in md
    assert f"{100 * c['macs_ratio']:.1f}% of the dense model" in md and "Calibration before fine-tuning" in md
    assert f"target 1.3x, predicted {lat['predicted_speedup']:.3f}x, measured {m['speedup']:.3f}x" in printed


@pytest.mark.slow
def test_quick_latency_demo_rerun_reuses_everything(quick_latency_demo, monkeypatch) -> None:
    from spvit_deploy.demo import run_demo

    out, rep, _ = quick_latency_demo
    fake = FakeProfile()
    monkeypatch.setattr("spvit_deploy.latency.profile.profile_latency", fake)
    again = run_demo(out, quick=True, target_speedup=1.3, export=False, progress=False)
    assert fake.calls == [] and again["latency"] == rep["latency"] and again["compressed"] == rep["compressed"]
    assert len(json.loads((out / "timings.json").read_text())["sessions"]) == 1  # the re-run computed nothing
