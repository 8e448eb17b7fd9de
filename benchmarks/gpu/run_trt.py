"""TensorRT on an NVIDIA GPU: dense vs SPViT-compressed DeiT-Ti/S/B (published architectures), fp16
engines with and without the Triton-kernel plugins, parity against ONNX Runtime fp32 and latency.

    python benchmarks/gpu/run_trt.py --out benchmarks/results/trt_<gpu>

Per model: export dense and compressed ONNX (random weights unless --checkpoint-dir has
<model>.pth), build the engines of ENGINES, each with one optimization profile per timed batch
(TensorRT tunes at every batch it is measured at), check each against ONNX Runtime fp32 on the
demo's real images (max abs, cosine, top-5 overlap; top-1 reported), then time every engine at every
batch (GPU launches only, no host copies; whether a CUDA graph was replayed is recorded per row).
The dense baseline is the fastest dense configuration that passes parity, Softmax in fp32 or in fp16
(the latter lets TensorRT fuse attention); the compressed side picks its best the same way, and the
report names the winners and the layers that look like fused attention. Writes results.json and
report.md; the goal (compressed DeiT-B >= 1.8x dense at batch 64, >= 1.4x at batch 1) is checked
in both. Without TensorRT or a GPU it exits 2 with one line saying what is missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

MODELS = {"deit_t": "paper:deit_tiny", "deit_s": "paper:deit_small", "deit_b": "paper:deit_base",
          "swin_t": "paper:swin_tiny", "swin_s": "paper:swin_small"}
ENGINES = (  # name, variant, fp16, plugin kernel sizes (() = no plugins), Softmax in fp16
    ("dense-fp16", "dense", True, (), False),
    ("dense-fp16-softmax16", "dense", True, (), True),  # no fp32 Cast/Softmax/Cast: attention can fuse
    ("compressed-fp16", "compressed", True, (), False),
    ("compressed-fp16-softmax16", "compressed", True, (), True),
    ("compressed-fp16-plugins", "compressed", True, (1, 3), False),
    ("compressed-fp16-plugins-3x3", "compressed", True, (3,), False),  # 1x1 blocks left to TensorRT's GEMMs
)
MODEL_SPECS: dict[str, Any] = {}
GOALS = ({"model": "deit_b", "batch": 64, "min_speedup": 1.8}, {"model": "deit_b", "batch": 1, "min_speedup": 1.4})
# fp16 engines vs ONNX Runtime fp32 on real images. Top-1 agreement is only reported: with random weights
# the logits are nearly tied and a flip says nothing; cosine and the overlap of the top-5 sets do.
PARITY = {"min_cosine": 0.999, "min_top5_overlap": 0.9}


# ------------------------------------------------------------------------------ pure logic (tested on CPU)


def latency_row(model: str, engine: str, batch: int, times_s: Sequence[float]) -> dict[str, Any]:
    t = sorted(x * 1e3 for x in times_s)
    pct = lambda q: t[min(len(t) - 1, int(round(q * (len(t) - 1))))]  # noqa: E731
    mean = statistics.fmean(t)
    return {"model": model, "engine": engine, "batch": batch, "iters": len(t), "p50_ms": pct(0.5),
            "p90_ms": pct(0.9), "p99_ms": pct(0.99), "mean_ms": mean, "min_ms": t[0],
            "throughput_ips": batch * 1e3 / mean}


def engine_settings(batches: Sequence[int], *, fp16: bool = True, plugins: bool = False, timing_cache: str | None = None,
                    workspace_gb: float | None = None) -> Any:
    """Build settings for an engine timed at `batches`: one optimization profile per batch (min 1, opt the
    batch, max the largest), so TensorRT picks its tactics at every batch size we measure."""
    from spvit_deploy.engine.build import BuildSettings

    opts = tuple(sorted(set(int(b) for b in batches)))
    return BuildSettings(fp16=fp16, plugins=plugins, min_batch=1, opt_batch=opts[0], max_batch=opts[-1],
                         opt_batches=opts, timing_cache=timing_cache, workspace_gb=workspace_gb,
                         detailed_profile=True)


def _best(by: dict, model: str, batch: int, prefix: str, ok: set | None) -> tuple[str, float] | None:
    """The fastest engine named `prefix*` for (model, batch) that passed parity (when `ok` is given)."""
    cands = [(p50, e) for (m, e, b), p50 in by.items()
             if m == model and b == batch and e.startswith(prefix) and (ok is None or (m, e) in ok)]
    return (min(cands)[1], min(cands)[0]) if cands else None


def baselines(rows: Sequence[dict[str, Any]], ok: set | None = None) -> list[dict[str, Any]]:
    """Per (model, batch): which dense and which compressed configuration won (fastest passing parity)."""
    by = {(r["model"], r["engine"], r["batch"]): r["p50_ms"] for r in rows}
    out = []
    for model, batch in sorted({(m, b) for m, _, b in by}):
        row: dict[str, Any] = {"model": model, "batch": batch}
        for side in ("dense", "compressed"):
            best = _best(by, model, batch, f"{side}-", ok)
            row[side] = best[0] if best else None
            row[f"{side}_p50_ms"] = best[1] if best else None
            row[f"{side}_candidates"] = {e: p for (m, e, b), p in sorted(by.items())
                                         if m == model and b == batch and e.startswith(f"{side}-")}
        out.append(row)
    return out


def speedups(rows: Sequence[dict[str, Any]], ok: set | None = None) -> list[dict[str, Any]]:
    """p50 speedups per (model, batch): each compressed engine over the fastest dense configuration that
    passed parity (`ok`: the (model, engine) pairs that did; None = all), plugins over no plugins."""
    by = {(r["model"], r["engine"], r["batch"]): r["p50_ms"] for r in rows}
    out = []
    for (model, engine, batch), p50 in sorted(by.items()):
        if not engine.startswith("compressed-"):
            continue
        dense = _best(by, model, batch, "dense-", ok)
        row = {"model": model, "batch": batch, "engine": engine, "dense_engine": dense[0] if dense else None,
               "vs_dense": round(dense[1] / p50, 4) if dense else None}
        if engine.startswith("compressed-fp16-plugins") and (model, "compressed-fp16", batch) in by:
            row["vs_no_plugins"] = round(by[(model, "compressed-fp16", batch)] / p50, 4)
        out.append(row)
    return out


def goal_checks(sp: Sequence[dict[str, Any]], ok: set | None = None) -> list[dict[str, Any]]:
    """Each goal with the best compressed engine's speedup over dense (None when not measured); with `ok`,
    only compressed engines that passed parity count."""
    out = []
    for g in GOALS:
        cands = [s["vs_dense"] for s in sp if s["model"] == g["model"] and s["batch"] == g["batch"]
                 and s["vs_dense"] is not None and (ok is None or (s["model"], s["engine"]) in ok)]
        best = max(cands) if cands else None
        out.append({**g, "speedup": best, "met": None if best is None else best >= g["min_speedup"]})
    return out


def parity_ok(c: dict[str, Any]) -> bool:
    return c["cosine"] >= PARITY["min_cosine"] and c["top5_overlap"] >= PARITY["min_top5_overlap"]


def render_markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = ["# TensorRT: dense vs SPViT-compressed DeiT (fp16, with and without plugins)", "",
             f"- GPU: {env.get('gpu')} (sm_{env.get('cc')}); TensorRT {env.get('tensorrt')}; "
             f"driver/CUDA as recorded in results.json; date {env.get('date_utc', '?')}",
             f"- Weights: {results['weights']}; latency = one engine launch (CUDA graph replay where the row says "
             f"so) + stream sync, no host copies; {results['settings']['iters']} iterations after "
             f"{results['settings']['warmup']} warm-up; p50 reported; one optimization profile per timed batch", "",
             "## Goals", "", "| model | batch | goal | measured | met |", "|---|---|---|---|---|"]
    for g in results["goals"]:
        got = "n/a" if g["speedup"] is None else f"{g['speedup']:.2f}x"
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['model']} | {g['batch']} | >= {g['min_speedup']}x | {got} | {met} |")
    lines += ["", "## Baselines: the fastest configuration passing parity", "",
              "| model | batch | dense winner | compressed winner |", "|---|---|---|---|"]
    for b in results.get("baselines", []):
        lines.append(f"| {b['model']} | {b['batch']} | {b['dense'] or 'none passed'} | {b['compressed'] or 'none passed'} |")
    lines += ["", "## Latency (p50 ms) and throughput (images/s)", "",
              "| model | engine | batch | p50 ms | p90 ms | images/s | CUDA graph |", "|---|---|---|---|---|---|---|"]
    for r in results["latency"]:
        graph = {True: "yes", False: "no", None: "?"}[r.get("cuda_graph")]
        lines.append(f"| {r['model']} | {r['engine']} | {r['batch']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | "
                     f"{r['throughput_ips']:.0f} | {graph} |")
    lines += ["", "## Speedups (p50)", "", "| model | batch | engine | vs dense (winner) | vs no plugins |",
              "|---|---|---|---|---|"]
    for s in results["speedups"]:
        vd = "n/a" if s["vs_dense"] is None else f"{s['vs_dense']:.2f}x ({s.get('dense_engine')})"
        vp = f"{s['vs_no_plugins']:.2f}x" if s.get("vs_no_plugins") else ""
        lines.append(f"| {s['model']} | {s['batch']} | {s['engine']} | {vd} | {vp} |")
    lines += ["", "## Parity with ONNX Runtime fp32 (real images)", "",
              f"Bar: cosine >= {PARITY['min_cosine']}, top-5 overlap >= {PARITY['min_top5_overlap']}; top-1 "
              "agreement only reported.", "",
              "| model | engine | max abs | cosine | top-5 overlap | top-1 agreement | ok |", "|---|---|---|---|---|---|---|"]
    for p in results["parity"]:
        lines.append(f"| {p['model']} | {p['engine']} | {p['max_abs_diff']:.3g} | {p['cosine']:.5f} | "
                     f"{p['top5_overlap']:.3f} | {p['top1_agreement']:.3f} | {'yes' if p['ok'] else '**no**'} |")
    lines += ["", "## Engines", "", "| model | engine | build s | plugins | precision | fused-attention layers |",
              "|---|---|---|---|---|---|"]
    for e in results["engines"]:
        plugins = ", ".join(f"{p['count']} x {p['implementation']}" for p in e["plugins"]) or "none"
        fused = e.get("fused_attention_layers")
        lines.append(f"| {e['model']} | {e['engine']} | {e['build_seconds']} | {plugins} | {e['precision']} | "
                     f"{'?' if fused is None else len(fused)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ GPU work


def _environment() -> dict[str, Any]:
    import tensorrt
    import torch
    import triton

    from spvit_deploy.host import environment
    from spvit_deploy.engine.device import gpu_info

    gpu = gpu_info()
    env = environment(None)
    env.update(gpu=gpu.name, cc=gpu.cc, tensorrt=tensorrt.__version__, torch=torch.__version__,
               cuda=torch.version.cuda, triton=triton.__version__)
    return env


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    import numpy as np

    from spvit_deploy.comparison import compare
    from spvit_deploy.engine.build import build_engine
    from spvit_deploy.passes.prepare import prepare_graph
    from spvit_deploy.engine.runner import TensorRTRunner, fused_attention_layers
    from spvit_deploy.engine.stages import topk_overlap
    from spvit_deploy.engine.samples import demo_images
    from spvit_deploy.export import export_onnx, ort_session
    from spvit_deploy.export.source import load_model_pair
    from spvit_deploy.models import data_config

    from spvit_deploy._io import write_json
    from spvit_deploy.spec import load_spec

    MODEL_SPECS.update({m: load_spec(a) for m, a in MODELS.items()})
    out = Path(args.out)
    work = out / "engines"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"kind": "spvit-deploy TensorRT benchmark", "environment": _environment(),
                               "settings": vars(args) | {"out": str(out)}, "latency": [], "parity": [], "engines": [],
                               "weights": "random (latency does not depend on them)"}
    cache = str(work / "tensorrt.timing-cache")
    for model in args.models.split(","):
        ckpt = Path(args.checkpoint_dir) / f"{model}.pth" if args.checkpoint_dir else None
        if ckpt is not None and ckpt.is_file():
            results["weights"] = f"checkpoints from {args.checkpoint_dir}"
        pair = load_model_pair(model=model, arch=MODELS[model], checkpoint=str(ckpt) if ckpt and ckpt.is_file() else None)
        cfg = data_config(pair["dense"].module)
        images = demo_images(args.images, pair["compressed"].spec.img_size, cfg["mean"], cfg["std"])
        refs = {}
        for variant, em in pair.items():
            path = work / f"{model}-{variant}.onnx"
            say(f"{model}: export {variant}")
            export_onnx(em.module, path, spec=em.spec, variant=variant, check_batches=(1,))
            sess = ort_session(path)
            refs[variant] = np.concatenate([sess.run(None, {"input": images[i:i + 16]})[0]
                                            for i in range(0, len(images), 16)])
        del pair
        has_3x3 = any(b.attn == "conv3x3" for b in MODEL_SPECS[model].blocks)
        for name, variant, fp16, kernels, softmax16 in ENGINES:
            if (args.engines and name not in args.engines.split(",")) or (kernels == (3,) and not has_3x3):
                continue
            plugins = bool(kernels)
            settings = engine_settings(args.batches, fp16=fp16, plugins=plugins, timing_cache=cache,
                                       workspace_gb=args.workspace_gb)
            plan = work / f"{model}-{name}.plan"
            say(f"{model}: build {name}")
            graph, info = prepare_graph(work / f"{model}-{name}.trt.onnx", onnx=work / f"{model}-{variant}.onnx",
                                        fp16=fp16, plugins=plugins, plugin_kernels=kernels or (1, 3),
                                        fp16_softmax=softmax16)
            meta = build_engine(graph, plan, settings, source=info)
            runner = TensorRTRunner(plan)
            try:
                try:
                    fused: list[str] | None = fused_attention_layers(runner.layers())
                except Exception:  # noqa: BLE001 - the inspector is a diagnostic: never lose the timings to it
                    fused = None
                results["engines"].append({"model": model, "engine": name, "build_seconds": meta["build_seconds"],
                                           "plugins": meta["plugins"], "precision": meta["precision"],
                                           "softmax": "fp16" if softmax16 else "fp32", "profiles": meta["profiles"],
                                           "fused_attention_layers": fused, "plan": str(plan)})
                step = min(16, max(args.batches))  # within the engine's profiles whatever --batches says
                got = np.concatenate([runner.infer({"input": images[i:i + step]})["logits"]
                                      for i in range(0, len(images), step)])
                c = {**compare(refs[variant], got).to_dict(), "top5_overlap": topk_overlap(refs[variant], got)}
                results["parity"].append({"model": model, "engine": name, "vs": f"onnxruntime fp32 ({variant})",
                                          **c, "ok": parity_ok(c)})
                for batch in args.batches:
                    feed = {"input": np.random.default_rng(batch).standard_normal(
                        (batch, *images.shape[1:])).astype(np.float32)}
                    say(f"{model}: time {name} batch {batch}")
                    row = latency_row(model, name, batch, runner.time(feed, args.iters, args.warmup))
                    results["latency"].append({**row, "cuda_graph": runner.graph_state["cuda_graph"],
                                               "graph_note": runner.graph_state["note"],
                                               "profile": runner.graph_state.get("profile_batches")})
            finally:
                runner.close()
        write_json(out / "results.partial.json", results)  # what a time limit would otherwise lose
    ok = {(p["model"], p["engine"]) for p in results["parity"] if p["ok"]}
    results["baselines"] = baselines(results["latency"], ok)
    results["speedups"] = speedups(results["latency"], ok)
    results["goals"] = goal_checks(results["speedups"], ok)
    return results


def _batches(text: str) -> list[int]:
    try:
        out = sorted({int(b) for b in text.split(",") if b.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batches must be comma-separated integers, got {text!r}") from None
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError(f"--batches must be positive integers, got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="deit_t,deit_s,deit_b")
    p.add_argument("--engines", default="", help=f"subset of {', '.join(e[0] for e in ENGINES)}")
    p.add_argument("--batches", default="1,16,64", type=_batches,
                   help="batch sizes to time; the engines get one optimization profile per batch")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--images", type=int, default=64, help="real images for the parity check")
    p.add_argument("--workspace-gb", type=float, default=None)
    p.add_argument("--checkpoint-dir", default=None, help="folder with <model>.pth dense checkpoints (optional)")
    args = p.parse_args(argv)
    from spvit_deploy._io import write_json, write_text
    from spvit_deploy.engine.device import gpu_info, require_tensorrt
    from spvit_deploy.errors import SpvitError

    unknown = [m for m in args.models.split(",") if m not in MODELS]
    try:
        if unknown:
            raise SpvitError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
        require_tensorrt()
        gpu_info()
        t0 = time.time()
        results = run(args, lambda m: print(f"[{time.time() - t0:7.1f}s] {m}", file=sys.stderr, flush=True))
    except SpvitError as e:
        print(f"run_trt: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_json(out / "results.json", results)
    write_text(out / "report.md", render_markdown(results))
    (out / "results.partial.json").unlink(missing_ok=True)
    print(json.dumps(results["goals"], indent=2))
    bad = [p for p in results["parity"] if not p["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
