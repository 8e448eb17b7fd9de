"""The README's demo, timed: `spvit-deploy demo` into a fresh folder, its report copied into
benchmarks/results/demo_report.{json,md} (the numbers the README quotes); with `--target-speedup R` the
latency-targeted demo, into demo_latency_report.{json,md}.

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/demo_run.py [--work runs/demo] [--target-speedup 1.5]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from spvit_deploy._io import write_json, write_text
from spvit_deploy.demo import run_demo

OUT = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/demo")
    ap.add_argument("--target-speedup", type=float, default=None)
    args = ap.parse_args()
    work = Path(args.work)
    if work.exists():  # a fresh run: the time is the whole demo's
        if any(work.iterdir()) and not (work / "report.json").is_file() and not (work / "run").is_dir():
            raise SystemExit(f"--work '{work}' is not empty and does not look like a demo folder; pick another")
        shutil.rmtree(work)
    rep = run_demo(work, target_speedup=args.target_speedup)
    name, flag = ("demo_report", "") if args.target_speedup is None else \
        ("demo_latency_report", f" --target-speedup {args.target_speedup:g}")
    write_json(OUT / f"{name}.json", rep)
    md = (work / "report.md").read_text().replace("`run/report.md`", "`run/report.md` of the demo folder")
    write_text(OUT / f"{name}.md", md + f"\nCommand: `spvit-deploy demo --out {work}{flag}` (benchmarks/demo_run.py).\n")


if __name__ == "__main__":
    main()
