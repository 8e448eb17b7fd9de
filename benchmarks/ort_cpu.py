"""Dense vs SPViT-compressed DeiT-Ti/S/B and Swin-T/S on ONNX Runtime (CPU), batch 1 and 16, plus a DeiT-B
graph ablation and, for Swin, where the time goes.

Regenerates benchmarks/results/ort_cpu/{results.json, report.md, latency.png}:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ort_cpu.py [--out DIR] [--quick]

Weights are random (latency does not depend on their values); every figure in the report comes
from results.json, written by this run. CLI equivalent of one model:
`spvit-deploy benchmark --model deit_b --arch paper:deit_base --backends onnxruntime --batch 1,16 --out DIR`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from spvit_deploy.bench.harness import BenchSettings, compare_graphs, measure_model  # noqa: E402
from spvit_deploy.host import wait_for_quiet  # noqa: E402
from spvit_deploy.bench.profile import ort_op_profile  # noqa: E402
from spvit_deploy.bench.report import write_report  # noqa: E402
from spvit_deploy.export.onnx import export_onnx  # noqa: E402
from spvit_deploy.export.source import load_model_pair  # noqa: E402

CASES = (("deit_t", "paper:deit_tiny"), ("deit_s", "paper:deit_small"), ("deit_b", "paper:deit_base"),
         ("swin_t", "paper:swin_tiny"), ("swin_s", "paper:swin_small"))
PROFILED = {"swin_t", "swin_s"}  # DeiT-B's profile is in the ablation
OTHER_CPU_MAX = 20.0  # % of one CPU that other processes may use while a model is timed
OUT = Path(__file__).resolve().parent / "results" / "ort_cpu"

NOTES = """\
Published SPViT architectures (`paper:deit_tiny|deit_small|deit_base`, `paper:swin_tiny|swin_small`)
against their dense DeiT / Swin on ONNX Runtime's CPU execution provider, fp32, both graphs from
`spvit-deploy export` (dynamo exporter, onnxslim, dynamic batch). Random weights: latency does not
depend on their values.

Swin: the published architectures use MSA, conv1x1 and skip blocks (no conv3x3). Their conv1x1 and
skip blocks sit in the first two stages (56x56 and 28x28 maps), where a window-attention block pays
for the cyclic roll and the window partition and merge of the whole map (the "layout" row of the
profiles below); the plain network's conv and skip blocks have no windows and no roll, so the
latency gain can exceed the MACs ratio. A skip block keeps LN1 and its add (x + LN1(x), what official
fine-tuning trained). The dense Swin graphs are timm's, exported the same way.

What was found while profiling the graph ONNX Runtime runs (`optimized_model_filepath`, ORT's
profiler), and what changed (the ablation at the end measures each change on DeiT-B):

- **Timing.** ONNX Runtime's worker threads spin after a run; two sessions timed in turn in one
  process stole each other's cores and made the same GEMM several times slower. Each model now
  runs in its own worker process and sessions set `session.force_spinning_stop`.
- **Conv blocks.** `(B, N, C) -> transpose -> (B, C, H, W)` plus ORT's NCHWc `ReorderInput` /
  `ReorderOutput` copied the patch tokens twice per side. `ConvAttention` now views the tokens as
  NHWC and permutes (ORT folds the permutes into its reorders, `channels_last=1`), and a 1x1
  conv is a plain MatMul on the tokens (no layout change). Same weights and state-dict keys; the
  plain-vs-supernet exactness tests still hold.
- **Attention (dense and compressed alike).** timm's fused qkv projection becomes a Split of the
  whole (B, T, 3C) tensor plus a transpose per part, and the dynamo exporter's SDPA decomposition
  transposes K once more. The export uses separate q/k/v projections (the same weights, sliced):
  one transpose each, no Split; K's transpose is fused into the MatMul.
- **Attention biases.** The key bias only shifts each query's scores by a constant, which softmax
  ignores, and the value bias passes through `softmax @ v` unchanged, so it folds into the
  projection's bias: two bias Adds fewer per attention (dense and compressed alike).
- **Final norm.** Only the class token's row of the last LayerNorm is read; the export norms that
  row after pooling. Otherwise ORT fuses the last residual Add, fc2's bias and the norm into one
  `SkipLayerNormalization`, which ran slower than the three ops on this CPU
  (`benchmarks/results/ort_alternatives.md`).
- **1x1 conv blocks** run their first projection on every token and drop the class token's row
  afterwards (d = 64 wide) instead of slicing the C-wide input.
- **GELU.** The dynamo exporter writes `x * (0.5 * (1 + erf(x / sqrt 2)))`, which ORT does not
  fuse; the export emits `(x * (1 + erf(x / sqrt 2))) * 0.5`, which ORT fuses into `BiasGelu`.
- **Skip blocks** pad the class token with zeros (one `Pad`) instead of Slice + zeros + Concat
  (the published DeiT architectures have no skip block).
- **Random weights** draw biases and norm scales too: with timm's zero biases onnxslim removes
  the bias Adds, which real checkpoints never allow.
- **FFN width padding** (`--pad-widths`): no measurable change here (see the ablation); MLAS's
  GEMMs handle any width. It stays an export option for GPU backends, where tile multiples may
  matter (not measured: no GPU on this machine).
- Tried and dropped (slower on this CPU, timed in isolation by `benchmarks/ort_alternatives.py`):
  bias Adds folded into `Gemm` on 2-D tokens, `Sum` of residual + MatMul + bias, ORT's
  `SkipLayerNormalization`, ScatterND instead of the conv blocks' Concat. ONNX's opset-23
  `Attention` op is faster there, but needs opset 23, which the TensorRT path has not been
  checked against.

Against the MACs ratio (see the profiles, "Where the time goes"): what does not shrink with the
MACs is LayerNorms, bias and residual Adds and the patch embedding (every block stays), and attention
matmuls, Softmax and transposes, which shrink with the number of attentions, not the MACs. That keeps
DeiT-Ti and DeiT-S a little below their MACs ratio. DeiT-B's published architecture cuts mostly FFN
units and its linear layers (most of its time) shrink at least as much as the MACs, so it reaches the
ratio. Swin exceeds it: the conv1x1 and skip blocks of its first two stages drop the roll and window
partition of the 56x56 and 28x28 maps (the "layout" row), which cost time but no MACs.
"""


@contextlib.contextmanager
def conv_blocks_as_before() -> Iterator[None]:
    """ConvAttention.forward as it was before this change (for the ablation only)."""
    from spvit_deploy.plain import ConvAttention

    def forward(self: Any, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        B, T, C = x.shape
        gh, gw = self.grid
        p = x[:, 1:].transpose(1, 2).reshape(B, C, gh, gw)
        y = self.act(self.conv(p)).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :1], self.proj(y)], dim=1)

    new = ConvAttention.forward
    ConvAttention.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        ConvAttention.forward = new  # type: ignore[method-assign]


def ablation(settings: BenchSettings, log: Any) -> dict[str, Any]:
    """DeiT-B: the exported compressed graph against its variants, and the dense graph with and without the rewrite."""
    pair = load_model_pair(model="deit_b", arch="paper:deit_base")
    comp, dense = pair["compressed"], pair["dense"]
    with tempfile.TemporaryDirectory(prefix="spvit-ablation-") as tmp:
        graphs: dict[str, Path] = {}

        def add(label: str, em: Any, **kw: Any) -> None:
            log(f"ablation: exporting '{label}'")
            path = Path(tmp) / f"{len(graphs)}.onnx"
            export_onnx(em.module, path, spec=em.spec, variant=em.variant, check_batches=(1,), **kw)
            graphs[label] = path

        add("compressed (as exported)", comp)
        add("compressed, FFN widths padded to x16", comp, pad_widths=16)
        add("compressed, FFN widths padded to x64", comp, pad_widths=64)
        with conv_blocks_as_before():
            add("compressed, conv blocks as before", comp)
        add("compressed, no export rewrites", comp, rewrite=False)
        add("dense (as exported)", dense)
        add("dense, no export rewrites", dense, rewrite=False)
        del pair, comp, dense
        log("ablation: timing")
        wait_for_quiet(threshold_pct=OTHER_CPU_MAX)
        ab = compare_graphs(graphs, settings, (3, 224, 224), "DeiT-B graph ablation (ONNX Runtime CPU)")
        log("ablation: repeating dense vs compressed")
        pair_graphs = {"dense": graphs["dense (as exported)"], "compressed": graphs["compressed (as exported)"]}
        ab["repeats"] = repeat_pair(pair_graphs, settings, trials=2 if settings.iters < 8 else 3)
        log("ablation: profiling")
        ab["profiles"] = [
            {"batch": b, "graphs": {k: ort_op_profile(p, b, threads=settings.resolved_threads, runs=runs)
                                    for k, p in pair_graphs.items()}}
            for b, runs in ((1, 2 if settings.iters < 8 else 10), (16, 1 if settings.iters < 8 else 3))
        ]
        return ab


def repeat_pair(graphs: dict[str, Path], settings: BenchSettings, trials: int) -> list[dict[str, Any]]:
    """Dense vs compressed timed again in `trials` independent trials (fresh worker processes,
    minutes apart): how much the speedup moves between runs on this machine."""
    from spvit_deploy.bench.harness import time_interleaved

    rows = []
    for t in range(1, trials + 1):
        wait_for_quiet(threshold_pct=OTHER_CPU_MAX)
        for b in settings.batches:
            timed, _ = time_interleaved("onnxruntime", {k: str(v) for k, v in graphs.items()}, b, (3, 224, 224),
                                        settings)
            rows.append({"trial": t, "batch": b, "dense_p50_ms": timed["dense"]["p50_ms"],
                         "compressed_p50_ms": timed["compressed"]["p50_ms"],
                         "p50_speedup": round(timed["dense"]["p50_ms"] / timed["compressed"]["p50_ms"], 4),
                         "iters": timed["dense"]["iters"], "other_cpu_pct": timed["dense"]["other_cpu_pct"]})
    return rows


def measure_quietly(settings: BenchSettings, log: Any, attempts: int = 3, **source: Any) -> dict[str, Any]:
    """`measure_model`, started when no other process is busy and repeated (up to `attempts` times) when
    other processes took more than OTHER_CPU_MAX % of a CPU while it was timing. The machine is shared."""
    for attempt in range(1, attempts + 1):
        waited = wait_for_quiet(threshold_pct=OTHER_CPU_MAX)
        sec = measure_model(settings, log=log, **source)
        sec["quiet_wait_s"], sec["attempt"] = waited, attempt
        busiest = max(r["other_cpu_pct"] for r in sec["rows"])
        if busiest <= OTHER_CPU_MAX:
            break
        log(f"{sec['model']}: other processes used {busiest:.0f}% CPU while timing; measuring again")
    return sec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help=f"default: {OUT} ({tempfile.gettempdir()}/spvit-ort-cpu-quick with --quick)")
    ap.add_argument("--quick", action="store_true", help="few iterations (a smoke test, not for committing)")
    ap.add_argument("--render-only", action="store_true",
                    help="re-write report.md from the results.json already in --out (after editing the notes)")
    args = ap.parse_args()
    if args.render_only:
        from spvit_deploy._io import write_text
        from spvit_deploy.bench.report import read_results, render_markdown

        folder = Path(args.out or OUT)
        write_text(folder / "report.md", render_markdown(read_results(folder / "results.json"), notes=NOTES))
        return 0
    quick = args.quick
    out = args.out or (Path(tempfile.gettempdir()) / "spvit-ort-cpu-quick" if quick else OUT)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    settings = BenchSettings(backends=("onnxruntime",), batches=(1, 16), iters=3 if quick else 24,
                             warmup=1 if quick else 2, rounds=3 if quick else 6)
    from dataclasses import replace

    sections = [measure_quietly(replace(settings, profile=m in PROFILED), log, model=m, arch=a) for m, a in CASES]
    ab_settings = BenchSettings(backends=("onnxruntime",), batches=(1, 16), iters=2 if quick else 8,
                                warmup=1, rounds=2 if quick else 4)
    ab = ablation(ab_settings, log)
    res = write_report(sections, settings, out, notes=NOTES, ablations=[ab])
    for s in res["speedups"]:
        log(f"{s['model']} batch {s['batch']}: p50 speedup {s['p50_speedup']:.2f}x (MACs ratio {s['macs_ratio']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
