"""Exactness of each stage on the published DeiT architectures (random weights, random BatchNorm
statistics and head-mixing logits, 224 px, fp32): `spvit_deploy.verify` with the ONNX stage.

Writes benchmarks/results/exactness.{json,md} (the figures README's "Exactness" section quotes):

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/exactness.py
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spvit_deploy import verify  # noqa: E402
from spvit_deploy._io import write_json, write_text  # noqa: E402
from spvit_deploy.bench.environment import environment  # noqa: E402

OUT = Path(__file__).parent / "results"
CASES = (("deit_t", "paper:deit_tiny"), ("deit_s", "paper:deit_small"), ("deit_b", "paper:deit_base"))


def main() -> None:
    rows = []
    for model, arch in CASES:
        rep = verify(model, arch, stages=("onnx",))
        rows.append({"model": model, "arch": arch, "ok": rep.ok, "checks": [asdict(c) for c in rep.checks]})
        print(model, [(c.stage, c.max_abs_diff) for c in rep.checks], flush=True)
    env = environment()
    write_json(OUT / "exactness.json", {"environment": env, "models": rows})
    stages = [c["stage"] for c in rows[0]["checks"]]
    lines = ["# Exactness per stage (max abs diff, fp32, 224 px, random weights)", "",
             "`spvit_deploy.verify(model, arch, stages=('onnx',))`: supernet vs dense, materialized vs the supernet "
             "pinned to the spec (limit 1e-5), ONNX Runtime vs the materialized network (limit 1e-4). Written by "
             f"`benchmarks/exactness.py` on {env['cpu_model']}, {env['date_utc']}.", "",
             "| model | arch | " + " | ".join(stages) + " | ok |", "|---|---|" + "---:|" * len(stages) + "---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['arch']} | " + " | ".join(f"{c['max_abs_diff']:.2g}" for c in r["checks"])
                     + f" | {r['ok']} |")
    write_text(OUT / "exactness.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
