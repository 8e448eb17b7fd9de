"""Measured calibration of the latency-targeted derivation, with fake timings (nothing is timed here): the
derivation is re-run at a corrected predicted target until the measured speedup is within 2.5% of the target,
the iterations are recorded, and the run's config, CLI and report carry it."""
from __future__ import annotations

import math

import pytest
import torch

from spvit_deploy.latency.calibrate import calibrate, next_goal
from spvit_deploy.latency.predict import dense_prediction, floor_prediction
from spvit_deploy.latency.table import LatencyTable

from latency_testing import NANO, fake_lut_dict


@pytest.fixture
def lut() -> LatencyTable:
    return LatencyTable.from_dict(fake_lut_dict((1, 16)))


def _net():
    from spvit_deploy.models import create_dense
    from spvit_deploy.supernet import to_supernet

    torch.manual_seed(0)
    net = to_supernet(create_dense(NANO, num_classes=10))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for blk in net.blocks:
            blk.attn.gates.logits.copy_(torch.randn(3, generator=g) * 2)
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))
    return net


def _target(lut, speedup):
    from spvit_deploy.train.gate_search import LatencyTarget

    dense, floor = dense_prediction(lut, 1), floor_prediction(lut, 1)
    return LatencyTarget(lut=lut, batch=1, dense_ms=dense, floor_ms=floor, ms=dense / speedup, speedup=speedup)


def biased(dense_ms, bias=1.25, power=1.0):
    """A fake runtime whose measured speedup is `bias` * predicted speedup ** `power` (the table is off)."""
    calls = []

    def measure(spec):
        pred = spec.extra["predicted_latency_ms"]
        s = bias * (dense_ms / pred) ** power
        calls.append(spec)
        return {"dense_ms": 10.0, "ms": round(10.0 / s, 6), "speedup": round(s, 6)}

    return measure, calls


def test_calibration_corrects_a_biased_table_to_within_tolerance(lut) -> None:
    from spvit_deploy.train.gate_search import derive_calibrated, derive_for_latency

    net, t = _net(), _target(lut, 1.5)
    measure, calls = biased(t.dense_ms, bias=1.25, power=1.1)
    plain = derive_for_latency(net, NANO, t)
    assert measure(plain)["speedup"] > 1.5 * 1.1  # uncalibrated: well off the target
    calls.clear()
    spec = derive_calibrated(net, NANO, t, measure=measure, log=lambda m: None)
    cal = spec.extra["latency_calibration"]
    chosen = cal["iterations"][cal["chosen"]]
    assert cal["met"] and abs(chosen["measured_speedup"] / 1.5 - 1) <= 0.025
    assert 2 <= len(calls) <= 4 and len(calls) == sum(not c["reused"] for c in cal["iterations"]) == cal["timed"]
    assert cal["iterations"][0]["goal_predicted_speedup"] == pytest.approx(1.5)
    assert chosen["predicted_ms"] == pytest.approx(spec.extra["predicted_latency_ms"])
    assert spec.extra["target_latency_ms"] == pytest.approx(t.ms, abs=1e-4)  # the real target, not the adjusted one
    assert all(k in chosen for k in ("goal_ms", "measured_dense_ms", "measured_ms", "miss"))


def test_no_correction_when_the_first_derivation_is_within_tolerance(lut) -> None:
    from spvit_deploy.train.gate_search import derive_calibrated

    net, t = _net(), _target(lut, 1.5)
    measure, calls = biased(t.dense_ms, bias=1.01)
    spec = derive_calibrated(net, NANO, t, measure=measure, log=lambda m: None)
    cal = spec.extra["latency_calibration"]
    assert len(calls) == 1 and len(cal["iterations"]) == 1 and cal["chosen"] == 0 and cal["met"]


def test_an_unreachable_measured_target_stops_at_the_cap_with_the_closest(lut) -> None:
    from spvit_deploy.train.gate_search import derive_calibrated

    net, t = _net(), _target(lut, 1.5)

    def measure(spec):  # the runtime never goes faster than 1.3x, whatever is asked
        s = min(1.3, t.dense_ms / spec.extra["predicted_latency_ms"])
        return {"dense_ms": 10.0, "ms": 10.0 / s, "speedup": s}

    spec = derive_calibrated(net, NANO, t, measure=measure, log=lambda m: None, max_iters=3)
    cal = spec.extra["latency_calibration"]
    assert not cal["met"] and cal["timed"] <= 3
    misses = [abs(c["miss"]) for c in cal["iterations"]]
    assert misses[cal["chosen"]] == min(misses)


def test_calibrate_with_a_fake_derivation_keeps_asks_in_bounds() -> None:
    from spvit_deploy.spec import ArchSpec, BlockSpec

    asked = []

    def derive(ms):
        asked.append(10.0 / ms)
        return ArchSpec(model=NANO, img_size=32, num_classes=10, source="t", extra={"predicted_latency_ms": ms},
                        blocks=(BlockSpec("msa", tuple(range(int(ms * 100)))),))

    def measure(spec):  # a table that underestimates the speedup by half
        s = 0.5 * 10.0 / spec.extra["predicted_latency_ms"]
        return {"dense_ms": 10.0, "ms": 10.0 / s, "speedup": s}

    _, rec = calibrate(derive, measure, 1.5, dense_ms=10.0, floor_ms=4.0, log=lambda m: None)
    assert all(1.0 <= a <= 2.5 for a in asked) and not rec["met"]  # 2.5x predicted is the fastest: 1.25x measured
    assert max(asked) == pytest.approx(2.5 * 0.999)


def test_next_goal_secant_and_bracket() -> None:
    steps = [{"goal_predicted_speedup": 1.5, "measured_speedup": 1.8}]
    assert next_goal(steps, 1.5, 1.0, 5.0) == pytest.approx(1.5 * 1.5 / 1.8)  # proportional first
    steps.append({"goal_predicted_speedup": 1.25, "measured_speedup": 1.4})
    x = next_goal(steps, 1.5, 1.0, 5.0)
    assert 1.25 < x < 1.5  # inside the bracket
    slope = math.log(1.8 / 1.4) / math.log(1.5 / 1.25)
    assert math.log(x) == pytest.approx(math.log(1.25) + math.log(1.5 / 1.4) / slope)


def test_the_option_the_config_and_the_report(lut) -> None:
    import argparse

    from spvit_deploy.cli.latency_options import add_latency_options, latency_given
    from spvit_deploy.train.config import DataConfig, TrainConfig
    from spvit_deploy.train.report import latency_section, render_latency
    from spvit_deploy.train.gate_search import derive_calibrated

    p = argparse.ArgumentParser()
    add_latency_options(p, p.add_mutually_exclusive_group())
    assert latency_given(p.parse_args([]))["latency_calibration"] is None
    assert latency_given(p.parse_args(["--no-latency-calibration"]))["latency_calibration"] is False
    new = TrainConfig(model=NANO, data=DataConfig(root="d"), target_ratio=0.5)
    old = new.to_dict()
    old.pop("latency_calibration")
    assert TrainConfig.from_dict(old) == new and new.latency_calibration
    net, t = _net(), _target(lut, 1.5)
    spec = derive_calibrated(net, NANO, t, measure=biased(t.dense_ms, bias=1.2)[0], log=lambda m: None)
    sec = latency_section(t, spec, None)
    assert sec["calibration"] == spec.extra["latency_calibration"]
    md = "\n".join(render_latency(sec))
    assert "Calibration before fine-tuning" in md and "| chosen |" in md


def test_paired_speedup_cancels_drift_between_rounds() -> None:
    from spvit_deploy.latency.calibrate import paired_speedup

    dense, cand = [], []
    for r in range(10):  # the machine slows down 5% per round; each round's ratio stays 1.5
        f = 1.05 ** r
        dense += [3.0 * f] * 3
        cand += [2.0 * f] * 3
    assert paired_speedup(dense, cand, 3) == pytest.approx(1.5)
    assert paired_speedup([3.0], [2.0], 3) == pytest.approx(1.5)


def test_a_repeated_architecture_is_not_timed_again_and_the_bracket_narrows() -> None:
    from spvit_deploy.spec import ArchSpec, BlockSpec

    def derive(ms):  # a coarse derivation: only two architectures, predicted 1.4x and 1.6x
        p = 1.6 if 10.0 / ms >= 1.55 else 1.4
        return ArchSpec(model=NANO, img_size=32, num_classes=10, source="t", extra={"predicted_latency_ms": 10.0 / p},
                        blocks=(BlockSpec("msa", tuple(range(int(p * 100)))),))

    for factor, met in ((0.95, True), (0.9, False)):
        timed = []

        def measure(spec):
            s = 10.0 / spec.extra["predicted_latency_ms"] * factor
            timed.append(s)
            return {"dense_ms": 10.0, "ms": 10.0 / s, "speedup": s}

        spec, rec = calibrate(derive, measure, 1.5, dense_ms=10.0, floor_ms=4.0, log=lambda m: None)
        assert len(timed) == 2 == rec["timed"] and rec["met"] == met  # each architecture timed once
        assert rec["iterations"][rec["chosen"]]["measured_speedup"] == pytest.approx(1.6 * factor)
        if not met:  # asked on, for an architecture it has not timed, until the bound
            assert len(rec["iterations"]) > 2 and any(i["reused"] for i in rec["iterations"])
