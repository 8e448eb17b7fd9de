"""Does ONNX Runtime on this CPU favour FFN widths that are multiples of 8 or 16? (The default of
`--ffn-multiple` for the onnxruntime backend, issue 13.)

DeiT-Ti with every block MSA and every FFN at one width, for widths around 384 (multiples of 16 and 8 and
widths off both), exported as the latency table's networks are and timed interleaved in one process
(random weights) at batch 1 and 16. A line a + b * width is fitted to all widths; a favoured multiple would
show as multiples sitting below the line (negative residuals) and the widths off it above.

Writes benchmarks/results/latency_ffn_multiple.{json,md}:

    HF_HUB_OFFLINE=1 flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/latency_ffn_multiple.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from spvit_deploy._io import write_json, write_text  # noqa: E402
from spvit_deploy.host import environment  # noqa: E402
from spvit_deploy.latency.measure import measure_specs  # noqa: E402
from spvit_deploy.latency.table import load_lut  # noqa: E402
from spvit_deploy.spec import ArchSpec, BlockSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WIDTHS = (368, 371, 374, 376, 379, 381, 383, 384, 385, 387, 389, 392, 395, 397, 400)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", default=str(OUT / "latency_lut_deit_t.json"), help="a DeiT-Ti table of this machine")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = ap.parse_args()
    if args.render:
        import json

        return render(json.loads((OUT / "latency_ffn_multiple.json").read_text()))
    t0 = time.perf_counter()
    lut = load_lut(args.lut)
    batches = tuple(int(b) for b in args.batches.split(","))
    specs = {f"w{w}": ArchSpec(model=lut.model, img_size=lut.img_size, num_classes=lut.num_classes, source=f"ffn {w}",
                               blocks=tuple(BlockSpec("msa", tuple(range(w))) for _ in range(lut.depth)))
             for w in WIDTHS}
    rows = measure_specs(specs, lut, batches, iters=args.iters, rounds=8)
    res: dict[str, Any] = {"benchmark": "latency_ffn_multiple", "model": lut.model, "backend": lut.backend,
                           "threads": lut.threads, "environment": environment(), "widths": list(WIDTHS),
                           "batches": {}, "wall_s": 0.0}
    for b in batches:
        ms = np.array([rows[f"w{w}"][b]["p50_ms"] for w in WIDTHS])
        a, c = np.polyfit(np.array(WIDTHS, dtype=float), ms, 1)[::-1]
        resid = ms / (a + c * np.array(WIDTHS)) - 1
        groups = {}
        for name, test in (("multiple of 16", lambda w: w % 16 == 0), ("multiple of 8, not 16", lambda w: w % 8 == 0 and w % 16),
                           ("not a multiple of 8", lambda w: w % 8 != 0)):
            r = [float(x) for w, x in zip(WIDTHS, resid) if test(w)]
            groups[name] = {"n": len(r), "mean_residual": round(statistics.mean(r), 4)}
        res["batches"][str(b)] = {"p50_ms": {str(w): round(float(m), 4) for w, m in zip(WIDTHS, ms)},
                                  "fit": {"ms_at_0": round(float(a), 4), "ms_per_unit": round(float(c), 6)},
                                  "residual": {str(w): round(float(x), 4) for w, x in zip(WIDTHS, resid)},
                                  "by_kind": groups,
                                  "other_cpu_pct": max(rows[f"w{w}"][b]["other_cpu_pct"] or 0 for w in WIDTHS)}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["iters"] = args.iters
    write_json(OUT / "latency_ffn_multiple.json", res)
    return render(res)


def render(res: dict[str, Any]) -> int:
    env = res["environment"]
    lines = [f"# FFN width multiples on {res['backend']} (CPU): {res['model']}, every block MSA, every FFN at one width",
             "",
             f"From `benchmarks/latency_ffn_multiple.py`. Machine: {env.get('cpu_model')}, {res['threads']} threads, "
             f"{res['wall_s']:.0f} s; random weights; all widths timed interleaved in one process (p50, "
             f"{res.get('iters', 40)} iterations, x3 at batch < 8). "
             "Residual: measured / (line fitted to all widths) - 1; a favoured multiple would sit below the line.", "",
             "| batch | multiple of 16 | multiple of 8, not 16 | not a multiple of 8 | other CPU % |", "|---:|---:|---:|---:|---:|"]
    for b, r in res["batches"].items():
        g = r["by_kind"]
        lines.append(f"| {b} | " + " | ".join(f"{100 * g[k]['mean_residual']:+.2f}% (n={g[k]['n']})" for k in g)
                     + f" | {r['other_cpu_pct']} |")
    lines += ["", "| width | " + " | ".join(f"batch {b} ms" for b in res["batches"]) + " |",
              "|---:|" + "---:|" * len(res["batches"])]
    for w in res["widths"]:
        lines.append(f"| {w} | " + " | ".join(f"{r['p50_ms'][str(w)]:.3f} ({100 * r['residual'][str(w)]:+.1f}%)"
                                              for r in res["batches"].values()) + " |")
    write_text(OUT / "latency_ffn_multiple.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
