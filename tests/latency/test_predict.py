"""The latency model: arithmetic of `predict_latency`, interpolation in FFN width, its differentiable
supernet form, and deriving an architecture at a latency target."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.latency.predict import ffn_curve, interp, predict_latency, supernet_latency
from spvit_deploy.latency.table import LatencyTable
from spvit_deploy.spec import ArchSpec, BlockSpec

from latency_testing import ATTN, FFN, FIXED, NANO, fake_lut_dict


def spec_of(ops, widths) -> ArchSpec:
    return ArchSpec(model=NANO, img_size=32, num_classes=10, source="test",
                    blocks=tuple(BlockSpec(op, tuple(range(w))) for op, w in zip(ops, widths)))


@pytest.fixture
def lut() -> LatencyTable:
    return LatencyTable.from_dict(fake_lut_dict((1, 16)))


def test_prediction_is_fixed_plus_ops_plus_interpolated_ffns(lut) -> None:
    ops = ["msa", "conv3x3", "conv1x1", "skip", "msa", "skip"]
    widths = [256, 64, 96, 0, 160, 1]
    p = predict_latency(spec_of(ops, widths), lut, batch=1)
    # FFN: 64 -> 0.2; 96 halfway 64..128 -> 0.225; 160 halfway 128..192 -> 0.3; 1 -> 0.2/64
    ffn = [0.5, 0.2, 0.225, 0.0, 0.3, 0.2 / 64]
    attn = [ATTN["msa"], ATTN["conv3x3"], ATTN["conv1x1"], 0.0, ATTN["msa"], 0.0]
    assert p.attn_ms == pytest.approx(attn) and p.ffn_ms == pytest.approx(ffn)
    assert p.total_ms == pytest.approx(FIXED + sum(attn) + sum(ffn))
    assert predict_latency(spec_of(ops, widths), lut, batch=16).total_ms == pytest.approx(16 * p.total_ms)


def test_ffn_curve_is_linear_between_widths_and_never_decreases() -> None:
    c = ffn_curve((0, 64, 128, 192, 256), FFN)
    assert len(c) == 257 and c[64] == pytest.approx(0.2) and c[32] == pytest.approx(0.1)
    dip = ffn_curve((0, 10, 20, 30), (0.0, 1.0, 0.8, 2.0))  # a measured dip is noise
    assert np.all(np.diff(dip) >= 0) and dip[20] == pytest.approx(1.0) and dip[30] == pytest.approx(2.0)
    curve = torch.tensor(c, dtype=torch.float64)
    w = torch.tensor(96.5, dtype=torch.float64, requires_grad=True)
    v = interp(w, curve)
    v.backward()
    assert float(v.detach()) == pytest.approx(0.2 + 0.05 * 32.5 / 64) and float(w.grad) == pytest.approx(0.05 / 64)


def test_a_spec_of_another_model_is_refused(lut) -> None:
    other = ArchSpec(model="deit_tiny_patch16_224", img_size=224, num_classes=10, source="t",
                     blocks=tuple(BlockSpec("msa", ()) for _ in range(12)))
    with pytest.raises(SpvitError, match="latency table is for vit_nano_patch4_32"):
        predict_latency(other, lut)
    with pytest.raises(SpvitError, match="keeps FFN unit 299"):
        predict_latency(spec_of(["msa"] * 6, [300] + [0] * 5), lut)


def _supernet():
    from spvit_deploy.models import create_dense
    from spvit_deploy.supernet import to_supernet

    torch.manual_seed(0)
    return to_supernet(create_dense(NANO, num_classes=10))


def test_the_supernet_form_equals_the_prediction_and_has_gate_gradients(lut) -> None:
    from spvit_deploy.supernet import fix_gates

    net = _supernet()
    spec = spec_of(["msa", "conv3x3", "conv1x1", "skip", "msa", "conv1x1"], [256, 64, 96, 0, 160, 7])
    fix_gates(net, spec)
    assert float(supernet_latency(net, lut, 1)) == pytest.approx(predict_latency(spec, lut, 1).total_ms, rel=1e-5)
    fix_gates(net, None)  # free gates: hard value (p > 0.5 with logits 1.5: all on = dense), sigmoid gradient
    f = supernet_latency(net, lut, 1)
    assert float(f) == pytest.approx(FIXED + 6 * (ATTN["msa"] + FFN[-1]), rel=1e-5)
    f.backward()
    blk = net.blocks[0]
    assert blk.attn.gates.logits.grad is not None and float(blk.attn.gates.logits.grad.abs().sum()) > 0
    assert float(blk.mlp.gates.logits.grad.abs().sum()) > 0


def test_derive_lands_on_the_latency_target(lut) -> None:
    from spvit_deploy.latency.predict import dense_prediction, floor_prediction
    from spvit_deploy.train.gate_search import LatencyTarget, derive_for_latency

    net = _supernet()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for blk in net.blocks:
            blk.attn.gates.logits.copy_(torch.randn(3, generator=g) * 2)
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))
    dense, floor = dense_prediction(lut, 1), floor_prediction(lut, 1)
    assert dense == pytest.approx(FIXED + 6 * (ATTN["msa"] + FFN[-1]))
    for ms in (dense / 1.3, dense / 2.0, floor + 0.3):
        t = LatencyTarget(lut=lut, batch=1, dense_ms=dense, floor_ms=floor, ms=ms, speedup=None)
        spec = derive_for_latency(net, NANO, t)
        got = predict_latency(spec, lut, 1).total_ms
        assert got == pytest.approx(spec.extra["predicted_latency_ms"], abs=1e-4)
        assert abs(got - ms) <= max(0.02 * ms, 0.5 / 64)  # within 2%, or within one FFN unit's share


def test_configs_written_before_latency_targets_still_load() -> None:
    from spvit_deploy.train.config import DataConfig, TrainConfig

    new = TrainConfig(model=NANO, data=DataConfig(root="d"), target_ratio=0.5)
    old = new.to_dict()
    for k in ("target_latency_ms", "target_speedup", "latency_lut", "latency_batch"):
        old.pop(k)
    loaded = TrainConfig.from_dict(old)
    assert loaded == new and loaded.differences(new) == []
    lat = TrainConfig.from_dict({**new.to_dict(), "target_ratio": 0.0, "target_speedup": 1.5, "latency_lut": "l.json"})
    assert lat.target_speedup == 1.5 and lat.differences(new) == ["latency_lut", "target_ratio", "target_speedup"]
    with pytest.raises(SpvitError, match="give one target of"):
        TrainConfig.from_dict({**new.to_dict(), "target_speedup": 1.5, "latency_lut": "l.json"})


def test_the_report_puts_target_predicted_and_measured_side_by_side(lut) -> None:
    from spvit_deploy.latency.predict import dense_prediction, floor_prediction
    from spvit_deploy.train.report import latency_section, render_latency
    from spvit_deploy.train.gate_search import LatencyTarget

    spec = spec_of(["msa", "skip", "conv1x1", "skip", "msa", "skip"], [256, 0, 64, 0, 128, 0])
    pred = predict_latency(spec, lut, 1).total_ms  # 1 + 0.5 + 0.1 + 0.5 + 0.5 + 0.2 + 0.25 = 3.05
    dense = dense_prediction(lut, 1)
    t = LatencyTarget(lut=lut, batch=1, dense_ms=dense, floor_ms=floor_prediction(lut, 1), ms=dense / 2.0, speedup=2.0)
    measured = {"backend": "onnxruntime", "batch": 1, "threads": 2, "iters": 30, "dense_ms": 7.7,
                "compressed_ms": 3.5, "speedup": 2.2, "other_cpu_pct": 0.0}
    sec = latency_section(t, spec, measured)
    assert sec["predicted_ms"] == pytest.approx(3.05) and sec["target_ms"] == pytest.approx(3.5)
    assert sec["predicted_speedup"] == pytest.approx(7.0 / 3.05, rel=1e-4)
    assert sec["prediction_error"] == pytest.approx(3.05 / 3.5 - 1, abs=1e-4)
    assert sec["measured_speedup_vs_target"] == pytest.approx(0.1) and sec["measured_vs_target"] == pytest.approx(0.0)
    md = "\n".join(render_latency(sec))
    assert "| target | | 3.5 | 2x |" in md and "| measured (p50, 30 iterations) | 7.7 | 3.5 | 2.2x |" in md
    assert "measured speedup +10.0% off the target" in md
    assert pred == pytest.approx(3.05)
    only = latency_section(replace_target(t), spec, None)  # a MACs-targeted run with a table: no target row
    assert only["target_ms"] is None and "| target |" not in "\n".join(render_latency(only))


def replace_target(t):
    from dataclasses import replace

    return replace(t, ms=None, speedup=None)
