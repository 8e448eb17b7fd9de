"""FFN width rounding in the latency-targeted derivation: widths in multiples of N (or the dense width),
still landing on the predicted target; the default per backend; the option and config field."""
from __future__ import annotations

import pytest
import torch

from spvit_deploy.latency.predict import dense_prediction, floor_prediction, predict_latency
from spvit_deploy.latency.table import LatencyTable, default_ffn_multiple

from latency_testing import NANO, fake_lut_dict


@pytest.fixture
def lut() -> LatencyTable:
    return LatencyTable.from_dict(fake_lut_dict((1,)))


def _net(seed: int):
    from spvit_deploy.models import create_dense
    from spvit_deploy.supernet import to_supernet

    torch.manual_seed(0)
    net = to_supernet(create_dense(NANO, num_classes=10))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blk in net.blocks:
            blk.attn.gates.logits.copy_(torch.randn(3, generator=g) * 2)
            blk.mlp.gates.logits.copy_(torch.randn(blk.mlp.dense_width, generator=g))
    return net


@pytest.mark.parametrize("mult", [8, 16, 48])
def test_widths_are_multiples_and_the_target_is_kept(lut, mult) -> None:
    from spvit_deploy.train.gate_search import LatencyTarget, derive_for_latency

    dense, floor = dense_prediction(lut, 1), floor_prediction(lut, 1)
    for seed in range(3):
        net = _net(seed)
        for speedup in (1.3, 2.0):
            ms = dense / speedup
            t = LatencyTarget(lut=lut, batch=1, dense_ms=dense, floor_ms=floor, ms=ms, ffn_multiple=mult)
            spec = derive_for_latency(net, NANO, t)
            assert all(b.ffn_width % mult == 0 or b.ffn_width == 256 for b in spec.blocks)
            got = predict_latency(spec, lut, 1).total_ms
            assert got == pytest.approx(spec.extra["predicted_latency_ms"], abs=1e-4)
            # within 2%, or half a chunk's share of the widest FFN step
            assert abs(got - ms) <= max(0.02 * ms, 0.5 * mult / 64 * 0.15 + 1e-9)
            assert spec.extra["ffn_multiple"] == mult and f"multiples of {mult}" in spec.extra["rule"]
            for blk, b in zip(net.blocks, spec.blocks):  # a block keeps its most confident units
                lg = blk.mlp.gates.logits.detach()
                if 0 < b.ffn_width < 256:
                    kept = lg[list(b.ffn_kept)]
                    dropped = lg[[u for u in range(256) if u not in set(b.ffn_kept)]]
                    assert float(kept.min()) >= float(dropped.max())


def test_multiple_one_keeps_units_one_at_a_time(lut) -> None:
    from spvit_deploy.train.gate_search import LatencyTarget, derive_for_latency

    dense, floor = dense_prediction(lut, 1), floor_prediction(lut, 1)
    t = LatencyTarget(lut=lut, batch=1, dense_ms=dense, floor_ms=floor, ms=dense / 1.7)
    spec = derive_for_latency(_net(0), NANO, t)
    assert t.ffn_multiple == 1 and any(b.ffn_width % 8 for b in spec.blocks)
    assert "multiples" not in spec.extra["rule"]


def test_default_multiple_per_backend(lut) -> None:
    from dataclasses import replace

    assert default_ffn_multiple(lut) == 1  # ORT CPU: no multiple measured to pay (latency_ffn_multiple.md)
    assert default_ffn_multiple(replace(lut, backend="tensorrt")) == 8
    assert default_ffn_multiple(replace(lut, backend="onnxruntime-cuda")) == 8


def test_option_config_and_resolution(lut, tmp_path) -> None:
    import argparse
    import json

    from spvit_deploy.cli.latency_options import add_latency_options, latency_given
    from spvit_deploy.errors import SpvitError
    from spvit_deploy.models import dims_for
    from spvit_deploy.train.config import DataConfig, TrainConfig
    from spvit_deploy.train.pipeline import resolve_latency

    p = argparse.ArgumentParser()
    add_latency_options(p, p.add_mutually_exclusive_group())
    assert latency_given(p.parse_args([]))["ffn_multiple"] is None
    assert latency_given(p.parse_args(["--ffn-multiple", "16"]))["ffn_multiple"] == 16
    base = TrainConfig(model=NANO, data=DataConfig(root="d"), target_ratio=0.5)
    old = base.to_dict()
    old.pop("ffn_multiple")
    assert TrainConfig.from_dict(old) == base and base.ffn_multiple == 0
    with pytest.raises(SpvitError, match="--ffn-multiple must be positive"):
        TrainConfig(model=NANO, data=DataConfig(root="d"), target_ratio=0.5, ffn_multiple=-8).validate()
    path = tmp_path / "lut.json"
    path.write_text(json.dumps(fake_lut_dict((1,))))
    dims = dims_for(NANO, num_classes=10)
    cfg = TrainConfig(model=NANO, data=DataConfig(root="d"), target_speedup=1.5, latency_lut=str(path))
    assert resolve_latency(cfg, dims).ffn_multiple == 1  # the backend's default
    from dataclasses import replace

    assert resolve_latency(replace(cfg, ffn_multiple=16), dims).ffn_multiple == 16
