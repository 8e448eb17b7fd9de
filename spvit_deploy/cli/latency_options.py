"""The latency-target options of `compress` and `search`: `--target-latency-ms X` or `--target-speedup R`
(in the targets' mutually exclusive group) with `--latency-lut lut.json` and `--latency-batch B`; the derived
architecture is timed against the dense model and re-derived (`--no-latency-calibration` turns that off)."""
from __future__ import annotations

import argparse
from typing import Any


def add_latency_options(p: argparse.ArgumentParser, targets: Any) -> None:
    targets.add_argument("--target-latency-ms", type=float, default=None,
                         help="latency budget in ms on the runtime of --latency-lut (predicted by the table, "
                              "measured after compress)")
    targets.add_argument("--target-speedup", type=float, default=None,
                         help="latency budget as a speedup over the dense model on the runtime of --latency-lut")
    g = p.add_argument_group("latency (spvit-deploy profile-latency)")
    g.add_argument("--latency-lut", default=None,
                   help="latency table from 'spvit-deploy profile-latency' (with a MACs target: report predicted "
                        "and measured latency)")
    g.add_argument("--latency-batch", type=int, default=None,
                   help="batch size of the table to use (default: its only one, or 1)")
    g.add_argument("--ffn-multiple", type=int, default=None, metavar="N",
                   help="with a latency target: derived FFN widths are multiples of N (or the dense width); default: "
                        "what the table's backend favours (8 for TensorRT and CUDA, 1 on CPU)")
    g.add_argument("--no-latency-calibration", dest="latency_calibration", action="store_false", default=None,
                   help="with a latency target: skip timing the derived architecture against the dense model "
                        "(and re-deriving until the measured speedup is within 2.5%%); the table's prediction only")


def latency_given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the latency options set (None: not given)."""
    return {"target_latency_ms": getattr(args, "target_latency_ms", None),
            "target_speedup": getattr(args, "target_speedup", None),
            "latency_lut": getattr(args, "latency_lut", None), "latency_batch": getattr(args, "latency_batch", None),
            "latency_calibration": getattr(args, "latency_calibration", None),
            "ffn_multiple": getattr(args, "ffn_multiple", None)}


def print_latency(args: argparse.Namespace, rep: dict[str, Any]) -> None:
    """One line: target vs predicted vs measured latency (nothing with --json or without a table)."""
    lat = rep.get("latency")
    if not lat or args.json:
        return
    parts = [f"latency ({lat['backend']}, batch {lat['batch']}):"]
    if lat["target_ms"] is not None:
        parts.append(f"target {lat['target_ms']:.4g} ms" + (f" ({lat['target_speedup']:.3g}x)" if lat["target_speedup"] else ""))
    parts.append(f"predicted {lat['predicted_ms']:.4g} ms ({lat['predicted_speedup']:.3g}x)")
    cal = lat.get("calibration")
    if cal:
        c = cal["iterations"][cal["chosen"]]
        parts.append(f"calibrated before fine-tuning: {c['measured_speedup']:.3g}x measured "
                     f"({cal.get('timed', len(cal['iterations']))} timed)")
    m = lat.get("measured")
    if m:
        parts.append(f"measured {m['compressed_ms']:.4g} ms vs dense {m['dense_ms']:.4g} ms ({m['speedup']:.3g}x)")
    print("  ".join(parts))
