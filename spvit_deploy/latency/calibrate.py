"""Measured calibration of a latency-targeted derivation.

The table's additive model is off by a few percent to tens of percent on whole networks (block interactions,
the runtime's fusions, and this machine's speed drifting between the profiling run and now). So after the
predictor-based derivation, and before fine-tuning, the candidate architecture is timed against the dense
model on the table's runtime, interleaved (drift cancels in the ratio; median of independent sessions), and the derivation is
re-run at a corrected predicted target (secant on log speedups, kept inside the bracket of what was measured)
until the measured speedup is within `tolerance` of the target or `max_iters` distinct candidates were
timed (a derivation that gives an architecture already timed reuses its measurement). The timing itself
(`latency.measure.measure_speedup`) exports and runs networks, a later stage than this algorithm; the caller
hands it in. The candidate whose measured speedup is closest to the target is kept; every iteration is recorded.

    spec, record = calibrate(lambda ms: derive_for_latency(net, model, replace(target, ms=ms)),
                             lambda spec: measure_speedup(spec, lut, batch), target_speedup=1.5,
                             dense_ms=target.dense_ms, floor_ms=target.floor_ms)
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from typing import Any, Callable

from ..spec import ArchSpec

TOLERANCE = 0.025  # measured speedup within 2.5% of the target ends the calibration
MAX_ITERS = 4  # candidates timed at most (the first derivation and three corrections)
MAX_DERIVATIONS_PER_TIMING = 3  # derivations (cheap; one that repeats a timed architecture is not re-timed)


def paired_speedup(dense_ms: list[float], ms: list[float], block: int) -> float:
    """Median over the interleaved rounds of (dense median / candidate median in that round): the machine's speed
    drifting between rounds cancels in each round's ratio."""
    import statistics

    n = min(len(dense_ms), len(ms)) // block
    if n < 1:
        return statistics.median(dense_ms) / statistics.median(ms)
    return statistics.median(statistics.median(dense_ms[r * block:(r + 1) * block])
                             / statistics.median(ms[r * block:(r + 1) * block]) for r in range(n))


def _key(spec: ArchSpec) -> tuple[Any, ...]:
    return tuple((b.attn, b.ffn_kept) for b in spec.blocks)


def calibrate(derive: Callable[[float], ArchSpec], measure: Callable[[ArchSpec], dict[str, float]],
              target_speedup: float, dense_ms: float, floor_ms: float, *, tolerance: float = TOLERANCE,
              max_iters: int | None = None, log: Callable[[str], None] | None = None
              ) -> tuple[ArchSpec, dict[str, Any]]:
    """The derived architecture whose measured speedup is closest to `target_speedup`, and the record of the
    iterations. `derive(ms)` derives at a predicted target of `ms`; `measure(spec)` times it against the dense
    model ({dense_ms, ms, speedup}); `dense_ms`/`floor_ms` are the predicted dense and fastest latencies."""
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    max_iters = max_iters or MAX_ITERS
    p_max = dense_ms / floor_ms * 0.999
    p = min(max(target_speedup, 1.0), p_max)  # the predicted speedup asked of the derivation
    steps: list[dict[str, Any]] = []
    cache: dict[tuple[Any, ...], dict[str, float]] = {}
    specs: list[ArchSpec] = []
    for it in range(MAX_DERIVATIONS_PER_TIMING * max_iters):  # a derivation that repeats a timed one is not timed
        spec = derive(dense_ms / p)
        key = _key(spec)
        reused = key in cache
        if not reused and len(cache) >= max_iters:
            break
        m = cache[key] if reused else measure(spec)
        cache[key] = m
        pred = spec.extra.get("predicted_latency_ms")
        steps.append({"iteration": it, "goal_predicted_speedup": round(p, 4), "goal_ms": round(dense_ms / p, 4),
                      "predicted_ms": pred, "predicted_speedup": round(dense_ms / pred, 4) if pred else None,
                      "measured_dense_ms": m["dense_ms"], "measured_ms": m["ms"], "measured_speedup": m["speedup"],
                      "miss": round(m["speedup"] / target_speedup - 1, 4), "reused": reused})
        specs.append(spec)
        say(f"latency calibration ({len(cache)}/{max_iters} timed): asked {p:.4g}x predicted, measured "
            f"{m['speedup']:.4g}x{' (same architecture as before)' if reused else ''} (dense {m['dense_ms']:.4g} ms, "
            f"candidate {m['ms']:.4g} ms) for a target of {target_speedup:.4g}x")
        if abs(m["speedup"] / target_speedup - 1) <= tolerance:
            break
        nxt = next_goal(steps, target_speedup, 1.0, p_max)
        if nxt is None or any(abs(nxt / s["goal_predicted_speedup"] - 1) < 1e-3 for s in steps):
            break  # nowhere new to go (at a bound, or the bracket has closed)
        p = nxt
    best = min(range(len(steps)), key=lambda k: (abs(steps[k]["miss"]), k))
    record = {"target_speedup": round(target_speedup, 4), "tolerance": tolerance, "max_iters": max_iters,
              "timed": len(cache),
              "iterations": steps, "chosen": best, "met": abs(steps[best]["miss"]) <= tolerance}
    chosen = specs[best]
    return replace(chosen, extra={**chosen.extra, "latency_calibration": record}), record


def next_goal(steps: list[dict[str, Any]], target: float, lo: float, hi: float) -> float | None:
    """The next predicted speedup to ask for: a secant step on (log asked, log measured) through the last two
    points that differ, else a proportional step (asked * target / measured); kept inside the bracket the
    measurements so far span (geometric midpoint if the step leaves it) and inside [lo, hi]."""
    xs = [math.log(s["goal_predicted_speedup"]) for s in steps]
    ys = [math.log(s["measured_speedup"]) for s in steps]
    t = math.log(target)
    x = xs[-1] + (t - ys[-1])  # proportional: measured moves one-for-one with asked
    for k in range(len(steps) - 2, -1, -1):
        dx, dy = xs[-1] - xs[k], ys[-1] - ys[k]
        if abs(dx) > 1e-6 and abs(dy) > 1e-4 and dy / dx > 0:
            x = xs[-1] + (t - ys[-1]) * dx / dy
            break
    below = [a for a, b in zip(xs, ys) if b < t]  # asked too little
    above = [a for a, b in zip(xs, ys) if b > t]  # asked too much
    b_lo, b_hi = (max(below) if below else -math.inf), (min(above) if above else math.inf)
    if b_lo < b_hi and not (b_lo < x < b_hi):
        if math.isinf(b_lo) or math.isinf(b_hi):
            x = min(max(x, b_lo), b_hi)
        else:
            x = (b_lo + b_hi) / 2
    x = min(max(x, math.log(lo)), math.log(hi))
    return math.exp(x)
