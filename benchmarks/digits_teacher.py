"""The demo's pre-trained teacher: `vit_nano_patch4_32` trained from scratch on the demo's
digits split (seed 0, 40 epochs, the `spvit-deploy demo --train-teacher` recipe), written with
its recipe, held-out accuracy and environment to spvit_deploy/data/digits_teacher/ (shipped
with the package, so the demo starts from a pre-trained model as a user would).

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/digits_teacher.py [--work runs/digits_teacher]
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from spvit_deploy.demo import build_shipped_teacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/digits_teacher")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work / "teacher", ignore_errors=True)  # always trained anew: the shipped file is this run's
    info = build_shipped_teacher(work)
    print(json.dumps({k: info[k] for k in ("top1", "top5", "epochs", "train_seconds")}))


if __name__ == "__main__":
    main()
