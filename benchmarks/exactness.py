"""Exactness of each stage on the published DeiT and Swin architectures (random weights, random BatchNorm
statistics and head-mixing logits, 224 px, fp32): `spvit_deploy.verify` with the ONNX stage.

The onnx.reference stages (onnx-plugin, onnx-fp16) are not run here at 224 px: onnx.reference is a
single-threaded numpy evaluator and Swin-T's graphs did not finish in 10 minutes on the 2-core machine;
the tests run them on the tiny Swin (tests/engine, tests/families).

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
from spvit_deploy.host import environment  # noqa: E402

OUT = Path(__file__).parent / "results"
SWIN_STAGES = ("onnx",)
CASES = (("deit_t", "paper:deit_tiny", ("onnx",)), ("deit_s", "paper:deit_small", ("onnx",)),
         ("deit_b", "paper:deit_base", ("onnx",)), ("swin_t", "paper:swin_tiny", SWIN_STAGES),
         ("swin_s", "paper:swin_small", SWIN_STAGES),
         ("swin_b", "paper:swin_base", SWIN_STAGES))


def main() -> None:
    rows = []
    for model, arch, stages in CASES:
        rep = verify(model, arch, stages=stages)
        rows.append({"model": model, "arch": arch, "ok": rep.ok, "checks": [asdict(c) for c in rep.checks]})
        print(model, [(c.stage, c.max_abs_diff) for c in rep.checks], flush=True)
    env = environment()
    write_json(OUT / "exactness.json", {"environment": env, "models": rows})
    stages = list(dict.fromkeys(c["stage"] for r in rows for c in r["checks"]))
    lines = ["# Exactness per stage (max abs diff, fp32, 224 px, random weights)", "",
             "`spvit_deploy.verify(model, arch, stages=...)`: supernet vs dense, materialized vs the supernet "
             "pinned to the spec (limit 1e-5), ONNX Runtime vs the materialized network (limit 1e-4). "
             f"Written by `benchmarks/exactness.py` on {env['cpu_model']}, {env['date_utc']}.", "",
             "| model | arch | " + " | ".join(stages) + " | ok |", "|---|---|" + "---:|" * len(stages) + "---|"]
    for r in rows:
        got = {c["stage"]: f"{c['max_abs_diff']:.2g}" for c in r["checks"]}
        lines.append(f"| {r['model']} | {r['arch']} | " + " | ".join(got.get(s, "-") for s in stages)
                     + f" | {r['ok']} |")
    write_text(OUT / "exactness.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
