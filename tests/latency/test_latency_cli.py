"""profile-latency and the latency targets of compress/search from the command line: bad input is one line
and exit status 2, nothing is written; profiling the nano ViT on the torch backend writes a loadable table."""
from __future__ import annotations

import json

import pytest

from spvit_deploy.cli import main
from spvit_deploy.latency.table import load_lut

from latency_testing import NANO, fake_lut_dict


def one_line_error(capsys, argv, message) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--backend", "onnxruntime", "--fp16"], "--fp16 is for --backend tensorrt"),
    (["--backend", "tensorrt"], "the tensorrt backend profiles fp16 engines: pass --fp16"),
    (["--backend", "tensorrt", "--fp16"], "cannot profile on tensorrt here, nothing was measured"),
    (["--batch", "0"], "--batch takes positive integers"),
    (["--width-steps", "0"], "--width-steps must be >= 1"),
])
def test_profile_bad_input(tmp_path, capsys, extra, message) -> None:
    one_line_error(capsys, ["profile-latency", "--model", NANO, "--out", str(tmp_path / "lut.json"), *extra], message)
    assert not (tmp_path / "lut.json").exists()


def test_profile_out_is_a_folder(tmp_path, capsys) -> None:
    one_line_error(capsys, ["profile-latency", "--model", NANO, "--out", str(tmp_path)], "is a folder")


def test_profile_writes_a_table_of_per_block_differences(tmp_path, capsys, monkeypatch) -> None:
    """The real graphs are made (torch backend: the materialized modules), the timing is replaced by known
    whole-network latencies, so the table's arithmetic is checked exactly (chunks of 2 networks + base + dense).
    Each chunk is timed in 3 sessions. The machine runs the second chunk 1.1x slower (everything in it), and one
    session of the first 1.3x slower with the MSA network's process 1.5x slower on top: dividing by the dense
    network timed beside each and the median over the sessions cancel both; the table comes out at the chunks'
    mean speed (1.05)."""
    import importlib

    bench = importlib.import_module("spvit_deploy.bench.harness")  # the package's `benchmark` is the function
    prof = importlib.import_module("spvit_deploy.latency.profile")

    per_block = {"msa": 0.5, "conv3x3": 0.2, "conv1x1": 0.1, "ffn256": 0.4}
    speeds = iter([1.0, 1.3, 1.0, 1.1, 1.1, 1.1])  # per session: chunk 1 three times, then chunk 2
    made, chunks = {}, []

    def fake_time(backend, paths, batch, input_shape, settings):
        assert backend == "torch" and batch == 2 and settings.threads is None
        made.update(paths)
        chunks.append(list(paths))
        slow = next(speeds)
        rows = {}
        for k in paths:
            op = k.split(":")[-1]
            ms = 1.0 + 6 * per_block[op] if k.startswith("g0:") else (1.0 + 5.4 if k == "dense" else 1.0)
            bad = 1.5 if slow == 1.3 and k == "g0:msa" else 1.0  # one process landed badly in one session
            rows[k] = {"p50_ms": slow * bad * ms, "p90_ms": slow * bad * ms, "iters": 2, "other_cpu_pct": 0.0}
        return rows, {}

    monkeypatch.setattr(bench, "time_interleaved", fake_time)
    monkeypatch.setattr(prof, "MAX_WORKERS", 4)
    monkeypatch.setattr(prof, "SESSIONS", 3)
    monkeypatch.setattr(prof, "CHECK_NETWORKS", 0)  # the dense network alone: its sum of blocks matches (scale 1)
    out = tmp_path / "lut.json"
    assert main(["profile-latency", "--model", NANO, "--backend", "torch", "--batch", "2", "--width-steps", "1",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lut = load_lut(out)
    assert lut.backend == "torch" and lut.precision == "fp32" and sorted(lut.batches) == [2]
    assert [g.widths for g in lut.groups] == [(0, 256)] and lut.groups[0].blocks == tuple(range(6))
    assert lut.environment["cpu_model"] and "torch" in lut.environment["libraries"]
    assert set(made) == {"base", "g0:msa", "g0:conv3x3", "g0:conv1x1", "g0:ffn256", "dense"}
    assert len(chunks) == 6 and all(c[:2] == ["base", "dense"] and len(c) == 4 for c in chunks)
    assert all(p.endswith(".pt") for p in made.values())
    t = lut.table(2)
    assert t.fixed_ms == pytest.approx(1.05) and t.dense_ms == pytest.approx(1.05 * 6.4)
    assert t.correction["delta_scale"] == pytest.approx(1.0) and t.correction["fitted_on"][0]["label"] == "dense"
    g = t.groups[0]
    assert g.attn_ms == pytest.approx({k: 1.05 * per_block[k] for k in ("msa", "conv3x3", "conv1x1")})
    assert g.ffn_ms == pytest.approx((0.0, 1.05 * 0.4))
    raw = {c["label"]: c for c in t.configs}
    assert raw["g0:ffn256"]["raw_p50_ms"] == pytest.approx(1.1 * 3.4) and raw["g0:ffn256"]["drift_scale"] == pytest.approx(1.05 / 1.1)
    assert summary["batches"][0]["batch"] == 2


def compress_argv(digits, tmp_path, *extra) -> list[str]:
    return ["compress", "--model", NANO, "--data", str(digits), "--no-pretrained", "--out", str(tmp_path / "run"),
            *extra]


def write_lut(tmp_path, **changes) -> str:
    d = fake_lut_dict((1, 16))
    d.update(changes)
    p = tmp_path / "lut.json"
    p.write_text(json.dumps(d))
    return str(p)


@pytest.mark.parametrize("extra, message", [
    (["--target-speedup", "1.5"], "need --latency-lut lut.json"),
    (["--target-speedup", "1.5", "--target-ratio", "0.5", "--latency-lut", "L"], "not allowed with argument"),
    (["--target-speedup", "0.8", "--latency-lut", "L"], "is slower than the dense model"),
    (["--target-speedup", "40", "--latency-lut", "L"], "is faster than the fastest reachable"),
    (["--target-latency-ms", "0.5", "--latency-lut", "L", "--latency-batch", "16"], "faster than the fastest"),
    (["--target-speedup", "1.5", "--latency-lut", "L", "--latency-batch", "4"], "batch sizes [1, 16], not 4"),
    (["--target-speedup", "1.5", "--latency-lut", "FOREIGN"], "was measured with CPU 'Another CPU'"),
    (["--target-speedup", "1.5", "--latency-lut", "OTHER"], "the latency table is for deit_tiny_patch16_224"),
    (["--target-speedup", "1.5", "--latency-lut", "MISSING"], "does not exist"),
])
def test_compress_latency_target_bad_input(digits, tmp_path, capsys, extra, message) -> None:
    from spvit_deploy.latency.table import here_fingerprint

    foreign = {**here_fingerprint("onnxruntime", 2, "fp32"), "cpu_model": "Another CPU"}
    paths = {"L": write_lut(tmp_path), "FOREIGN": str(tmp_path / "foreign.json"), "OTHER": str(tmp_path / "o.json"),
             "MISSING": str(tmp_path / "missing.json")}
    (tmp_path / "foreign.json").write_text(json.dumps({**fake_lut_dict(), "environment": foreign}))
    (tmp_path / "o.json").write_text(json.dumps({**fake_lut_dict(), "model": "deit_tiny_patch16_224"}))
    argv = compress_argv(digits, tmp_path, *[paths.get(a, a) for a in extra])
    if "not allowed" in message:  # argparse's own error for two targets
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err
        return
    one_line_error(capsys, argv, message)
    assert not (tmp_path / "run").exists()


def test_profile_scales_the_blocks_to_the_whole_mixed_networks(tmp_path, capsys, monkeypatch) -> None:
    """Whole mixed networks (the check networks and the dense one) take 0.9x the sum of their blocks: the
    table's per-block latencies come out scaled by 0.9, so the predictor matches them. Every chunk runs at its
    own machine speed; the table comes out at their mean."""
    import importlib

    from spvit_deploy.latency.predict import predict_latency
    from spvit_deploy.spec import ArchSpec, BlockSpec

    bench = importlib.import_module("spvit_deploy.bench.harness")
    prof = importlib.import_module("spvit_deploy.latency.profile")
    per_block = {"msa": 0.5, "conv3x3": 0.2, "conv1x1": 0.1, "skip": 0.0}
    ffn = lambda w: 0.4 * w / 256  # noqa: E731  (linear in width: the table's interpolation is exact)
    groups = prof.block_groups(__import__("spvit_deploy.models", fromlist=["dims_for"]).dims_for(NANO), 1)
    nets = dict(prof.profile_configs(groups, 6, checks=3))
    nets["dense"] = [("msa", 256)] * 6
    per_session = [1.0, 1.2, 0.9, 1.1, 1.0, 1.2, 0.9, 1.1, 1.0, 1.2, 0.9, 1.1]  # 4 chunks x 3 sessions
    speeds = iter(per_session)  # each session at its own machine speed (divided out against the dense one)
    nets["base"] = [("skip", 0)] * 6

    def fake_time(backend, paths, batch, input_shape, settings):
        slow = next(speeds)
        rows = {}
        for k in paths:
            s = sum(per_block[op] + ffn(w) for op, w in nets[k])
            ms = slow * (1.0 + (0.9 * s if k.startswith("check") or k == "dense" else s))
            rows[k] = {"p50_ms": ms, "p90_ms": ms, "iters": 2, "other_cpu_pct": 0.0}
        return rows, {}

    monkeypatch.setattr(bench, "time_interleaved", fake_time)
    monkeypatch.setattr(prof, "MAX_WORKERS", 4)
    monkeypatch.setattr(prof, "SESSIONS", 3)
    monkeypatch.setattr(prof, "CHECK_NETWORKS", 3)
    out = tmp_path / "lut.json"
    assert main(["profile-latency", "--model", NANO, "--backend", "torch", "--batch", "2", "--width-steps", "1",
                 "--out", str(out)]) == 0
    lut = load_lut(out)
    t = lut.table(2)
    assert t.correction["delta_scale"] == pytest.approx(0.9) and len(t.correction["fitted_on"]) == 4
    import statistics  # the table is at the mean over the chunks of the dense network's median session speed

    speed = statistics.mean(statistics.median(per_session[3 * c:3 * c + 3]) for c in range(4))
    assert t.groups[0].attn_ms["msa"] == pytest.approx(0.45 * speed)
    assert t.groups[0].ffn_ms == pytest.approx((0.0, 0.36 * speed))
    assert lut.timing["check_networks"] == 3
    check = [b for k, b in prof.profile_configs(groups, 6, checks=3) if k == "check1"][0]
    spec = ArchSpec(model=NANO, img_size=32, num_classes=10, source="t",
                    blocks=tuple(BlockSpec(op, tuple(range(w))) for op, w in check))
    want = speed * 0.9 * sum(per_block[op] + ffn(w) for op, w in check)
    assert predict_latency(spec, lut, 2).total_ms - t.fixed_ms == pytest.approx(want, rel=1e-6)
    old = json.loads(out.read_text())
    old["batches"]["2"].pop("correction")  # tables profiled before the correction still load (unscaled)
    out.write_text(json.dumps(old))
    assert load_lut(out).table(2).correction is None
