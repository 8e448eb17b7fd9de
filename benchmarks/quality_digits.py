"""Quality on real data: SPViT against a naive pruning baseline at the same MACs and training
budget, on the demo's digits (held-out split), at 50% and 45% of the dense MACs, several seeds.

- dense: the demo's ViT-Nano teacher (trained from scratch, `spvit-deploy demo` recipe).
- SPViT: `compress` with the demo's config (search 8 epochs, fine-tune 20, soft distillation).
- baseline: every attention kept (MSA), each FFN cut to the same width, units ranked by weight
  magnitude (||fc1 row|| * ||fc2 column||), width chosen so its MACs do not exceed SPViT's
  (keeping every MSA alone costs 43.5% of the dense MACs, so at 45% little FFN is left);
  fine-tuned from the teacher for search + fine-tune epochs (28) with the same optimizer,
  schedule and distillation.
Writes benchmarks/results/quality_digits.{json,md}; runs live in --work (default runs/quality_digits).

    flock /tmp/spvit-heavy.lock .venv/bin/python benchmarks/quality_digits.py [--seeds 0,1,2] [--ratios 0.5,0.45]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from spvit_deploy import macs as M
from spvit_deploy._io import write_json, write_text
from spvit_deploy.models import create_dense, dims_for
from spvit_deploy.spec import ArchSpec, BlockSpec
from spvit_deploy.demo import MODEL, DemoPlan, demo_config, prepare_digits, shipped_teacher, train_teacher
from spvit_deploy.train.pipeline import compress, finetune
from spvit_deploy.train.report import environment

OUT = Path(__file__).parent / "results"


def magnitude_spec(weights: Path, max_macs: int) -> ArchSpec:
    """All MSA; every FFN keeps the same number of units, the largest |fc1 row| * |fc2 column|."""
    model = create_dense(MODEL, checkpoint=weights, num_classes=10)
    dims = dims_for(MODEL, num_classes=10)
    geom = dims.blocks[0]  # every block of a ViT has the same geometry
    unit = M.ffn_macs(1, geom)
    left = max_macs - dims.fixed_macs - dims.depth * M.attn_macs("msa", geom)
    width = int(left // (dims.depth * unit))
    blocks = []
    for blk in model.blocks:
        score = blk.mlp.fc1.weight.norm(dim=1) * blk.mlp.fc2.weight.norm(dim=0)
        kept = sorted(torch.topk(score, width).indices.tolist())
        blocks.append(BlockSpec(attn="msa", ffn_kept=tuple(kept)))
    return ArchSpec(model=MODEL, img_size=32, num_classes=10, blocks=tuple(blocks), source="baseline: magnitude")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ratios", default="0.5,0.45", help="SPViT targets as fractions of the dense MACs")
    ap.add_argument("--work", default="runs/quality_digits")
    args = ap.parse_args()
    work, plan, t0 = Path(args.work), DemoPlan(), time.perf_counter()
    split = prepare_digits(work / "data", 0, plan.val_fraction)
    teacher = shipped_teacher(plan, 0, split, work / "teacher") or train_teacher(work / "data", work / "teacher", plan, 0,
                                                                                progress=False)
    weights = work / "teacher" / "model.safetensors"
    rows = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            rows.append(one_pair(work, replace(plan, target_ratio=ratio), weights, seed))
            print(json.dumps(rows[-1]), flush=True)

    env = environment()
    summary = {str(r): summarize([row for row in rows if row["target_ratio"] == r])
               for r in sorted({row["target_ratio"] for row in rows}, reverse=True)}
    wall = time.perf_counter() - t0
    write_json(OUT / "quality_digits.json", {"benchmark": "quality_digits", "environment": env, "data": split,
                                             "teacher": teacher, "rows": rows, "summary": summary,
                                             "wall_s": round(wall, 1)})
    write_text(OUT / "quality_digits.md", markdown(rows, summary, split, teacher, env, wall))


def one_pair(work: Path, plan: DemoPlan, weights: Path, seed: int) -> dict:
    """SPViT at `plan.target_ratio` and the magnitude baseline at SPViT's MACs, one seed."""
    tag = f"r{plan.target_ratio:g}_s{seed}"
    cfg = demo_config(work / "data", plan, weights, seed)
    sp = compress(cfg, work / f"spvit_{tag}", resume=True, progress=False)
    spec = magnitude_spec(weights, int(sp["compressed"]["gmacs"] * 1e9 + 0.5))
    spec.save(work / f"baseline_{tag}.json")
    base_cfg = replace(cfg, finetune=replace(cfg.finetune, epochs=cfg.search.epochs + cfg.finetune.epochs))
    bl = finetune(base_cfg, work / f"baseline_{tag}", arch=work / f"baseline_{tag}.json", resume=True, progress=False)
    return {"target_ratio": plan.target_ratio, "seed": seed, "dense_top1": sp["dense"]["top1"],
            "dense_gmacs": sp["dense"]["gmacs"], "spvit_top1": sp["compressed"]["top1"],
            "spvit_gmacs": sp["compressed"]["gmacs"], "spvit_ops": sp["arch"]["ops"], "spvit_ffn": sp["arch"]["ffn_widths"],
            "spvit_train_s": (sp["search"]["seconds"] or 0) + (sp["finetune"]["seconds"] or 0),
            "baseline_top1": bl["compressed"]["top1"], "baseline_gmacs": bl["compressed"]["gmacs"],
            "baseline_ffn": bl["arch"]["ffn_widths"][0], "baseline_train_s": bl["finetune"]["seconds"]}


def summarize(rows: list[dict]) -> dict:
    def stat(key: str) -> dict:
        v = [r[key] for r in rows]
        return {"mean": round(statistics.mean(v), 3), "std": round(statistics.stdev(v), 3) if len(v) > 1 else 0.0}

    return {k: stat(k) for k in ("dense_top1", "spvit_top1", "baseline_top1", "spvit_gmacs", "baseline_gmacs")}


def markdown(rows: list[dict], summary: dict, split: dict, teacher: dict, env: dict, wall: float) -> str:
    d = rows[0]["dense_gmacs"]
    lines = [
        "# Quality on real data: SPViT vs a naive baseline at the same MACs (digits, held-out split)", "",
        f"Data: scikit-learn digits, {split['train']} train / {split['val']} held-out images (32x32, seed "
        f"{split['seed']}; one image is {100 / split['val']:.2f} points). Dense: {MODEL} trained from scratch for "
        f"{teacher['epochs']} epochs{' (the pre-trained teacher shipped with the package)' if teacher.get('source') else ''}"
        f", held-out top-1 {teacher['top1']:.2f}. CPU: {env['cpu']} ({', '.join(env.get('cpu_flags', []))}), "
        f"{env['threads']} threads, torch {env['torch']}; whole run {wall / 60:.0f} min.", "",
        "| target | seed | SPViT top-1 | SPViT MACs | baseline top-1 | baseline MACs | baseline FFN width |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {100 * r['target_ratio']:.0f}% | {r['seed']} | {r['spvit_top1']:.2f} | "
                     f"{100 * r['spvit_gmacs'] / d:.1f}% | {r['baseline_top1']:.2f} | {100 * r['baseline_gmacs'] / d:.1f}% "
                     f"| {r['baseline_ffn']} / 256 |")
    for ratio, s in summary.items():
        lines.append(f"| {100 * float(ratio):.0f}% | mean ± std | {s['spvit_top1']['mean']:.2f} ± "
                     f"{s['spvit_top1']['std']:.2f} | | {s['baseline_top1']['mean']:.2f} ± {s['baseline_top1']['std']:.2f}"
                     " | | |")
    lines += ["", "SPViT: gate search (8 epochs) then fine-tuning (20 epochs) with soft distillation from the dense "
              "model. Baseline: every attention kept, every FFN cut to the same width (units with the largest "
              "|fc1 row| x |fc2 column|), fine-tuned 28 epochs with the same optimizer, schedule and distillation; "
              "its MACs never exceed SPViT's. Seeds vary the search, the gate sampling and the data order; the "
              "teacher and the split are fixed.", "", "SPViT architectures (attention per block / FFN widths):", ""]
    lines += [f"- {100 * r['target_ratio']:.0f}%, seed {r['seed']}: {' '.join(r['spvit_ops'])} / "
              f"{' '.join(map(str, r['spvit_ffn']))}" for r in rows]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
