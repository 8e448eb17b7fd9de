"""Run reports: `report.json` and `report.md` (dense vs compressed top-1/top-5, GMACs, params,
per-block choices) and `search.png` (GMACs and val top-1 over the search), from the run's
results and its `metrics.jsonl`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import macs as M
from .._io import write_json, write_text
from ..families import ModelDims
from ..spec import ArchSpec
from .config import TrainConfig

PLOT_FILE = "search.png"


def environment() -> dict[str, Any]:
    """Where a number was measured: versions, threads, CPU/GPU."""
    import platform

    import timm
    import torch

    from ..host import cpu_flags, cpu_model

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "threads": torch.get_num_threads(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
            "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "machine": platform.platform()}


def read_metrics(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def stage_seconds(rows: list[dict[str, Any]], stage: str) -> float | None:
    """Training time of a stage, summed over resumed sessions (the last step row's clock)."""
    secs = [r["seconds"] for r in rows if r.get("stage") == stage and r.get("kind") == "step"]
    return round(secs[-1], 2) if secs else None


def plot_search(rows: list[dict[str, Any]], target_gmacs: float | None, dense_gmacs: float, path: Path) -> bool:
    """GMACs per search step and val top-1 per search epoch; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = [r for r in rows if r.get("stage") == "search" and r.get("kind") == "step"]
    evals = [r for r in rows if r.get("stage") == "search" and r.get("kind") == "eval"]
    if not steps:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot([r["step"] for r in steps], [r["gmacs"] for r in steps], color="tab:blue", lw=1, label="GMACs (gates)")
    ax.axhline(dense_gmacs, color="gray", ls=":", lw=1, label="dense")
    if target_gmacs:
        ax.axhline(target_gmacs, color="tab:blue", ls="--", lw=1, label="target")
    ax.set_xlabel("search step")
    ax.set_ylabel("GMACs", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", color="tab:red", label="val top-1")
    ax2.set_ylabel("val top-1 (%)", color="tab:red")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [str(h.get_label()) for h in lines], loc="center right", fontsize=8)
    ax.set_title("SPViT search: architecture cost and accuracy")
    fig.tight_layout()
    from .._io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def latency_section(latency: Any, spec: ArchSpec, measured: dict[str, Any] | None) -> dict[str, Any]:
    """Target vs predicted vs measured latency (a `search.LatencyTarget` and `latency.measure_run`'s result)."""
    from ..latency.predict import predict_latency

    pred = predict_latency(spec, latency.lut, latency.batch).total_ms
    sec = {**latency.to_dict(), "predicted_ms": round(pred, 4),
           "predicted_speedup": round(latency.dense_ms / pred, 4), "measured": measured}
    if spec.extra.get("latency_calibration"):  # the derivation timed against the dense model before fine-tuning
        sec["calibration"] = spec.extra["latency_calibration"]
    if measured:
        sec["prediction_error"] = round(pred / measured["compressed_ms"] - 1, 4)
        if latency.ms is not None:
            sec["measured_vs_target"] = round(measured["compressed_ms"] / latency.ms - 1, 4)
        if latency.speedup:
            sec["measured_speedup_vs_target"] = round(measured["speedup"] / latency.speedup - 1, 4)
    return sec


def write_report(out: Path, cfg: TrainConfig, dims: ModelDims, dense: dict[str, Any], comp: dict[str, Any] | None,
                 spec: ArchSpec, target_macs: float | None, seconds: float, world: int = 1,
                 latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `report.json`, `report.md` and the search plot into `out`; the report (`latency`: the
    `latency_section` of a run with a latency table)."""
    rows = read_metrics(out)
    cost = M.cost(dims, spec)
    target = target_macs / 1e9 if target_macs else None
    arch_gmacs = cost.gmacs
    blocks = [{"block": b.block, "attn": b.attn, "ffn_width": b.ffn_width, "ffn_dense": dims.mlp_hidden[b.block],
               "gmacs": round(b.macs / 1e9, 6)} for b in cost.blocks]
    search_evals = [r for r in rows if r.get("stage") == "search" and r.get("kind") == "eval"]
    rep: dict[str, Any] = {
        "model": spec.model,
        "img_size": spec.img_size,
        "num_classes": spec.num_classes,
        "target_gmacs": target,
        "dense": _round(dense),
        "compressed": _round({**comp, "macs_ratio": arch_gmacs / dense["gmacs"]}) if comp else None,
        "arch": {"gmacs": round(arch_gmacs, 6), "params": cost.params,
                 "target_error": round(arch_gmacs / target - 1, 5) if target else None,
                 "rule": spec.extra.get("rule"), "gates_gmacs": spec.extra.get("gates_gmacs"),
                 "ops": spec.ops, "ffn_widths": [b.ffn_width for b in spec.blocks]},
        "blocks": blocks,
        "search": {"epochs": cfg.search.epochs, "evals": [_round(_pick(r, "epoch", "top1", "top5", "gmacs"))
                                                          for r in search_evals],
                   "seconds": stage_seconds(rows, "search")},
        "finetune": {"epochs": cfg.finetune.epochs, "seconds": stage_seconds(rows, "finetune")},
        "seconds": round(seconds, 2),
        "processes": world,
        "config": cfg.to_dict(),
    }
    if latency is not None:
        rep["latency"] = latency
    if plot_search(rows, target, dense["gmacs"], out / PLOT_FILE):
        rep["plot"] = PLOT_FILE
    write_json(out / "report.json", rep)
    write_text(out / "report.md", render_markdown(rep))
    return rep


def render_latency(lat: dict[str, Any]) -> list[str]:
    m = lat.get("measured")
    head = (f"## Latency ({lat['backend']}, {lat['precision']}, batch {lat['batch']}, {lat['threads']} threads)")
    lines = ["", head, "", "| | dense (ms) | compressed (ms) | speedup |", "|---|---:|---:|---:|"]
    if lat["target_ms"] is not None:
        sp = f"{lat['target_speedup']:.3g}x" if lat["target_speedup"] else f"{lat['dense_predicted_ms'] / lat['target_ms']:.3g}x"
        lines.append(f"| target | | {lat['target_ms']:.4g} | {sp} |")
    lines.append(f"| predicted (latency table) | {lat['dense_predicted_ms']:.4g} | {lat['predicted_ms']:.4g} | "
                 f"{lat['predicted_speedup']:.3g}x |")
    if m:
        lines.append(f"| measured (p50, {m['iters']} iterations) | {m['dense_ms']:.4g} | {m['compressed_ms']:.4g} | "
                     f"{m['speedup']:.3g}x |")
        lines += ["", f"Prediction error {100 * lat['prediction_error']:+.1f}% of the measured latency"
                  + (f"; measured speedup {100 * lat['measured_speedup_vs_target']:+.1f}% off the target"
                     if "measured_speedup_vs_target" in lat else "")
                  + (f"; measured latency {100 * lat['measured_vs_target']:+.1f}% off the target"
                     if "measured_vs_target" in lat and "measured_speedup_vs_target" not in lat else "") + "."]
        if "p50_speedup" in m:
            lines += ["", f"Measured speedup: the median over {m.get('rounds', '?')} interleaved rounds of each round's "
                          f"dense / compressed ratio (drift between rounds cancels); the ratio of the p50s is "
                          f"{m['p50_speedup']:.3g}x."]
    else:
        lines += ["", "Not measured (the search stage alone; `compress` measures the materialized network)."]
    cal = lat.get("calibration")
    if cal:
        lines += ["", f"Calibration before fine-tuning (candidate timed against the dense model, interleaved, random "
                      f"weights; target {cal['target_speedup']:.4g}x, tolerance {100 * cal['tolerance']:.1f}%):", "",
                  "| iteration | asked (predicted speedup) | predicted | measured speedup | miss | |",
                  "|---:|---:|---:|---:|---:|---|"]
        for c in cal["iterations"]:
            lines.append(f"| {c['iteration'] + 1} | {c['goal_predicted_speedup']:.4g}x | {c['predicted_speedup']:.4g}x | "
                         f"{c['measured_speedup']:.4g}x | {100 * c['miss']:+.1f}% | "
                         f"{'chosen' if c['iteration'] == cal['chosen'] else ''} |")
    return lines


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def render_markdown(rep: dict[str, Any]) -> str:
    d, c, a = rep["dense"], rep["compressed"], rep["arch"]
    lines = [f"# SPViT compression of {rep['model']} ({rep['img_size']} px, {rep['num_classes']} classes)", ""]
    if rep["target_gmacs"]:
        lines.append(f"Target {rep['target_gmacs']:.4g} GMACs; the derived architecture has {a['gmacs']:.4g} GMACs "
                     f"({100 * a['target_error']:+.2f}%; rule: {a['rule']}).")
        lines.append("")
    lines += ["| model | top-1 (%) | top-5 (%) | GMACs | params (M) |", "|---|---|---|---|---|",
              f"| dense | {d['top1']:.2f} | {d['top5']:.2f} | {d['gmacs']:.4g} | {d['params'] / 1e6:.3f} |"]
    if c:
        lines.append(f"| compressed | {c['top1']:.2f} | {c['top5']:.2f} | {c['gmacs']:.4g} | {c['params'] / 1e6:.3f} |")
        lines += ["", f"MACs: {100 * c['macs_ratio']:.1f}% of the dense model; top-1 change "
                  f"{c['top1'] - d['top1']:+.2f} points (val/)."]
    if rep.get("latency"):
        lines += render_latency(rep["latency"])
    lines += ["", "## Per-block choices", "", "| block | attention | FFN units kept | GMACs |", "|---|---|---|---|"]
    lines += [f"| {b['block']} | {b['attn']} | {b['ffn_width']} / {b['ffn_dense']} | {b['gmacs']:.4g} |"
              for b in rep["blocks"]]
    if rep.get("plot"):
        lines += ["", "## Search", "", f"![GMACs and val top-1 over the search]({rep['plot']})"]
    ev = rep["search"]["evals"]
    if ev:
        lines += ["", "| search epoch | val top-1 | GMACs (p > 0.5) |", "|---|---|---|"]
        lines += [f"| {r['epoch']} | {r['top1']:.2f} | {r['gmacs']:.4g} |" for r in ev]
    cfg = rep["config"]
    lines += ["", "## Run", "",
              f"search {cfg['search']['epochs']} epochs ({rep['search']['seconds']} s), fine-tune "
              f"{cfg['finetune']['epochs']} epochs ({rep['finetune']['seconds']} s), {rep['processes']} process(es), "
              f"this session {rep['seconds']} s; distillation {cfg['distill']}, seed {cfg['seed']}, "
              f"lambda {cfg['search']['lam']:.4g}, batch {cfg['data']['batch_size']} per process.", ""]
    return "\n".join(lines)
