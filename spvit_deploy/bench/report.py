"""Benchmark outputs: `results.json` (every number), `report.md` (tables from it) and `latency.png`.

Every figure in the Markdown comes from the results dict written beside it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from .._io import atomic_path, write_json, write_text
from ..artefacts import BenchResults, load
from .settings import RESULTS_VERSION, VARIANTS, BenchSettings, settings_dict
from ..host import environment

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOT_FILE = "latency.png"


def write_report(sections: Sequence[dict[str, Any]], settings: BenchSettings, out: str | Path,
                 notes: str = "", ablations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Assemble `measure_model` (and `compare_graphs`) results and write the three files into `out`."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "results_version": RESULTS_VERSION,
        "kind": "spvit-deploy benchmark: dense vs compressed",
        "settings": settings_dict(settings),
        "environment": environment(settings.resolved_threads),
        "models": list(sections),
        "speedups": [s for sec in sections for s in sec["speedups"]],
        "skipped": [dict(s, model=sec["model"]) for sec in sections for s in sec["skipped"]],
        "ablations": list(ablations),
    }
    load(BenchResults, results, str(out_dir / RESULTS_FILE))  # what is written passes the reader's checks
    write_json(out_dir / RESULTS_FILE, results)
    plotted = write_plot(results, out_dir / PLOT_FILE)
    write_text(out_dir / REPORT_FILE, render_markdown(results, notes, PLOT_FILE if plotted else None))
    return results


def read_results(path: str | Path) -> dict[str, Any]:
    """A benchmark's `results.json` (or its folder), validated."""
    import json

    from ..errors import SpvitError

    p = Path(path)
    p = p / RESULTS_FILE if p.is_dir() else p
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SpvitError(f"cannot read benchmark results '{p}' ({type(e).__name__}); re-run the benchmark") from None
    load(BenchResults, data, str(p))
    return data


def _f(v: float, digits: int = 1) -> str:
    return f"{v:.{digits}f}"


def render_markdown(results: dict[str, Any], notes: str = "", plot: str | None = PLOT_FILE) -> str:
    env, st = results["environment"], results["settings"]
    v = env["versions"]
    lines = ["# Dense vs SPViT-compressed: latency, throughput, memory", ""]
    if notes:
        lines += [notes.strip(), ""]
    cores = f"{env['usable_cpus']} usable CPUs ({env['logical_cpus']} logical, {env['physical_cores']} physical cores)"
    lines += [
        f"- Machine: {env['cpu_model']}; {cores}; {st['threads']} threads; "
        f"ISA: {', '.join(env['cpu_flags']) or 'n/a'}" + (f"; GPUs: {', '.join(env['gpus'])}" if env["gpus"] else ""),
        f"- Load average (1/5/15 min) when the report was written: {env['load_average']}; "
        f"busiest processes then: {'; '.join(env['busiest_processes']) or 'n/a'}",
        f"- Date (UTC): {env['date_utc']}; {env['platform']}",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Timing: per (backend, batch) each model in its own worker process; {st['warmup']} warm-up "
        f"iterations, then {st['iters']} timed iterations per model in {st['rounds']} blocks of up to "
        f"{st['block']}, alternating which model goes first; latency of one `infer` call "
        "(input already in memory). Throughput = batch / mean latency. 'Other CPU %' = CPU time that other "
        "processes on the machine used while these were timed (100 = one core busy). Peak RSS = the worker's "
        "high-water mark (Python + runtime + model + activations); 'before load' is its RSS before the "
        "model was loaded." + (" p99 of fewer than 100 samples is close to the maximum." if st["iters"] < 100 else ""),
        "",
        "## Speedups (dense / compressed)",
        "",
        "| model | backend | batch | MACs ratio | p50 speedup | mean speedup | p50 speedup / MACs ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in results["speedups"]:
        lines.append(f"| {s['model']} | {s['backend']} | {s['batch']} | {s['macs_ratio']:.2f}x | "
                     f"**{s['p50_speedup']:.2f}x** | {s['mean_speedup']:.2f}x | "
                     f"{s['p50_speedup'] / s['macs_ratio']:.0%} |")
    if plot:
        lines += ["", f"![p50 latency vs batch]({plot})"]
    for sec in results["models"]:
        weights = "; ".join(f"{k}: {'random' if r else 'given'}" for k, r in sec["random_weights"].items())
        lines += [
            "", f"## {sec['model']} ({sec['arch']}), {sec['img_size']} px", "",
            f"GMACs dense {sec['gmacs']['dense']} / compressed {sec['gmacs']['compressed']} "
            f"(ratio {sec['macs_ratio']:.2f}x); params {sec['params']['dense'] / 1e6:.2f} M / "
            f"{sec['params']['compressed'] / 1e6:.2f} M; weights: {weights}"
            + (" (random weights are fine for latency; biases and norm scales are drawn too, so no op folds away)"
               if any(sec["random_weights"].values()) else "") + ".",
            f"Load average before this model: {sec['load_before']['load_average']}, after: "
            f"{sec['load_after']['load_average']}"
            + (f"; measured on attempt {sec['attempt']} after waiting {sec['quiet_wait_s']} s for other processes "
               "to go quiet" if "attempt" in sec else "") + ".",
            "",
            "| backend | batch | model | p50 ms | p90 ms | p99 ms | mean ms | img/s | peak RSS MiB (before load) "
            "| iters | other CPU % |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sec["rows"]:
            lines.append(
                f"| {r['backend']} | {r['batch']} | {r['variant']} | {_f(r['p50_ms'], 2)} | {_f(r['p90_ms'], 2)} | "
                f"{_f(r['p99_ms'], 2)} | {_f(r['mean_ms'], 2)} | {_f(r['throughput_ips'])} | "
                f"{_f(r['peak_rss_mib'], 0)} ({_f(r['rss_before_load_mib'], 0)}) | {r['iters']} | "
                f"{_f(r.get('other_cpu_pct', float('nan')), 0)} |")
        if sec["export"]:
            lines += ["", "| exported graph | ONNX Runtime vs PyTorch max abs diff (batch 1, 3) | nodes | size MiB |",
                      "|---|---:|---:|---:|"]
            for variant, e in sec["export"].items():
                pad = f", FFN widths padded to x{e['pad_widths']}" if e.get("pad_widths") else ""
                lines.append(f"| {variant}{pad} | {e['parity_max_abs_diff']:.2g} | {sum(e['op_counts'].values())} | "
                             f"{e['size_mib']} |")
        for a in sec["agreement"]:
            lines.append(f"\n{a['variant']} at batch {a['batch']}: {a['backend']} vs {a['vs']}: max abs diff "
                         f"{a['max_abs_diff']:.2g}, cosine {a['cosine']:.6f}, top-1 agreement {a['top1_agreement']:.2f}")
        for s in sec["skipped"]:
            lines.append(f"\nSkipped {s['backend']}: {s['reason']}")
        for prof in sec.get("profiles", []):
            lines += render_profile(prof)
    for ab in results.get("ablations", []):
        lines += render_ablation(ab)
    return "\n".join(lines) + "\n"


RUNTIME_OPS = ("Transpose", "Split", "Concat", "ReorderInput", "ReorderOutput", "Add")


def render_ablation(ab: dict[str, Any]) -> list[str]:
    st = ab["settings"]
    lines = ["", f"## {ab['title']}", "",
             f"{ab['backend']}, {st['threads']} threads; each graph in its own worker process, {st['warmup']} warm-up "
             f"and {st['iters']} timed iterations in {st['rounds']} interleaved blocks; speedup relative to "
             f"'{ab['first']}'.", "",
             "| batch | graph | p50 ms | p90 ms | mean ms | p50 speedup vs first | iters | other CPU % |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in ab["rows"]:
        lines.append(f"| {r['batch']} | {r['graph']} | {_f(r['p50_ms'], 2)} | {_f(r['p90_ms'], 2)} | "
                     f"{_f(r['mean_ms'], 2)} | {r['p50_speedup_vs_first']:.3f}x | {r['iters']} | "
                     f"{_f(r.get('other_cpu_pct', float('nan')), 0)} |")
    ops = ab.get("runtime_op_counts") or {}
    if ops:
        lines += ["", "Nodes in the graph ONNX Runtime runs after its own fusions (`optimized_model_filepath`):", "",
                  "| graph | nodes | " + " | ".join(RUNTIME_OPS) + " |", "|---|---:|" + "---:|" * len(RUNTIME_OPS)]
        for label, counts in ops.items():
            lines.append(f"| {label} | {sum(counts.values())} | "
                         + " | ".join(str(counts.get(o, 0)) for o in RUNTIME_OPS) + " |")
    if ab.get("repeats"):
        lines += ["", "The dense and compressed graphs timed again in independent trials (fresh worker processes, "
                  "minutes apart), to show how much the speedup moves between runs on this machine:", "",
                  "| trial | batch | dense p50 ms | compressed p50 ms | p50 speedup | iters | other CPU % |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ab["repeats"]:
            lines.append(f"| {r['trial']} | {r['batch']} | {_f(r['dense_p50_ms'], 2)} | {_f(r['compressed_p50_ms'], 2)} | "
                         f"{r['p50_speedup']:.2f}x | {r['iters']} | {_f(r.get('other_cpu_pct', float('nan')), 0)} |")
    for prof in ab.get("profiles", []):
        lines += render_profile(prof)
    return lines


def render_profile(prof: dict[str, Any]) -> list[str]:
    """Kernel time per kind of op for two graphs (`spvit_deploy.bench.profile`), and their ratio."""
    from .profile import CATEGORIES

    (la, pa), (lb, pb) = prof["graphs"].items()
    lines = ["", f"Where the time goes at batch {prof['batch']} (ONNX Runtime's profiler, kernel ms per run, "
             f"mean of {pa['runs']} run{'s' if pa['runs'] != 1 else ''}; a run took {_f(pa['run_ms'])} / {_f(pb['run_ms'])} ms with profiling on):", "",
             f"| op kind | {la} ms | {lb} ms | {la} / {lb} | GMAC/s ({la} / {lb}) |", "|---|---:|---:|---:|---:|"]
    rows = [(name, pa["categories"][k], pb["categories"][k]) for name, k in CATEGORIES]
    tot = [sum(c["ms"] for c in p["categories"].values()) for p in (pa, pb)]
    for name, a, b in rows + [("all kernels", {"ms": tot[0], "macs": 0}, {"ms": tot[1], "macs": 0})]:
        if a["ms"] < 0.05 and b["ms"] < 0.05:
            continue
        ratio = f"{a['ms'] / b['ms']:.2f}x" if min(a["ms"], b["ms"]) >= 0.05 else "-"
        rate = (f"{a['macs'] / a['ms'] / 1e6:.0f} / {b['macs'] / b['ms'] / 1e6:.0f}"
                if a["macs"] and b["macs"] and a["ms"] and b["ms"] else "")
        lines.append(f"| {name} | {_f(a['ms'])} | {_f(b['ms'])} | {ratio} | {rate} |")
    return lines


def write_plot(results: dict[str, Any], path: Path) -> bool:
    """p50 latency vs batch (log-log), dense dashed and compressed solid, one panel per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sections = results["models"]
    fig, axes = plt.subplots(1, max(1, len(sections)), figsize=(4.6 * max(1, len(sections)), 3.8), squeeze=False)
    for ax, sec in zip(axes[0], sections):
        backends = list(dict.fromkeys(r["backend"] for r in sec["rows"]))
        batches = sorted({r["batch"] for r in sec["rows"]})
        for i, b in enumerate(backends):
            style = ("-", "--", ":", "-.")[i % 4]
            for v, color in zip(VARIANTS, ("0.45", f"C{i}")):
                rows = sorted((r for r in sec["rows"] if r["backend"] == b and r["variant"] == v),
                              key=lambda r: r["batch"])
                if not rows:
                    continue
                xs = [r["batch"] for r in rows]
                ys = [r["p50_ms"] for r in rows]
                err = [[0 for _ in rows], [r["p90_ms"] - r["p50_ms"] for r in rows]]
                ax.errorbar(xs, ys, yerr=err, color=color, linestyle=style, marker="o", capsize=3,
                            label=f"{b}: {v}")
            for s in sec["speedups"]:
                if s["backend"] == b:
                    y = next(r["p50_ms"] for r in sec["rows"] if r["backend"] == b and r["batch"] == s["batch"]
                             and r["variant"] == "compressed")
                    ax.annotate(f"{s['p50_speedup']:.2f}x", (s["batch"], y), textcoords="offset points",
                                xytext=(6, -12), fontsize=8, color=f"C{i}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("batch")
        ax.set_ylabel("p50 latency, ms (bar: to p90)")
        ax.set_title(f"{sec['model']}\nMACs ratio {sec['macs_ratio']:.2f}x; label: p50 speedup", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return True
