"""Quality on Fashion-MNIST: SPViT against three real baselines at the same MACs, held-out accuracy on
the official 10k test set and ONNX Runtime CPU latency (batch 1 and 64) of every exported model.

- data: a stratified subset of the 60k training images (`--train-per-class`) and a validation split
  held out of the other training images (`--val-per-class`; what every run evaluates while it
  trains); the official 10k test set is read once per finished model.
- dense teacher: `vit_nano_patch4_32` at 28 px (7x7 patches of 4 px), trained once from scratch.
- methods, each from the teacher, with the same distillation, optimizer and total epochs:
  spvit (search + fine-tune, `compress` with a MACs target), uniform_ffn (every MSA, one FFN width),
  smaller_dense (the teacher's first blocks), torch_pruning (Torch-Pruning's timm ViT recipe, Taylor
  importance, half the heads + FFN units). Budgets: `--ratios` of the dense MACs, seeds `--seeds`.
- every run is written to the results JSON as it finishes (atomically); a restart skips finished runs.
- latency: after the runs, in one quiet phase, every model interleaved in its own worker process.

Writes benchmarks/results/quality_fashion.{json,md,png}; runs live in --work.

    nice -n 10 .venv/bin/python benchmarks/quality_fashion.py --lock /tmp/spvit-heavy.lock [--seeds 0,1,2]
    (or the whole study under `flock /tmp/spvit-heavy.lock ...` without --lock)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from spvit_deploy._io import atomic_path, write_json, write_text
from spvit_deploy.host import environment, wait_for_quiet
from spvit_deploy.train import fashion

MODEL, IMG = "vit_nano_patch4_32", 28
METHODS = ("spvit", "uniform_ffn", "smaller_dense", "torch_pruning")
OUT = Path(__file__).parent / "results"
THREADS = 2
WAITED = [0.0]  # seconds this session waited for --lock (other jobs' turns)


@dataclass(frozen=True)
class Plan:
    """The study's budget (sized for ~50 CPU minutes on the 2-core machine)."""

    train_per_class: int = 500
    val_per_class: int = 100
    teacher_epochs: int = 20
    search_epochs: int = 2
    finetune_epochs: int = 4
    batch_size: int = 64
    taylor_batches: int = 10


@contextlib.contextmanager
def heavy(lock: str | None) -> Iterator[None]:
    """Hold `lock` (flock(2), as `flock LOCKFILE cmd` takes it) for one heavy phase, so other jobs on a
    shared machine run between this study's runs, never beside them."""
    if not lock:
        yield
        return
    with open(lock, "a") as f:
        t0 = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        WAITED[0] += time.perf_counter() - t0
        if time.perf_counter() - t0 > 1:
            log(f"waited {time.perf_counter() - t0:.0f} s for {lock}")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ configs
def base_config(plan: Plan, data: Path, teacher: str, seed: int, ratio: float = 0.0, **over: Any) -> Any:
    """The demo's recipe at 28 px on the subset: soft distillation (alpha 0.7, tau 2), AdamW, cosine."""
    from spvit_deploy.train.config import DataConfig, config_for

    dc = DataConfig(root=f"fashion-mnist:{data}", batch_size=plan.batch_size, eval_batch_size=500, scale=(0.7, 1.0),
                    hflip=0.5, color_jitter=0.0, smoothing=0.1)
    given = dict(img_size=IMG, checkpoint=teacher, seed=seed, amp="none", distill="soft", distill_alpha=0.7,
                 distill_tau=2.0, clip_grad=1.0, checkpoint_every=100, search_epochs=plan.search_epochs,
                 search_lr=5e-4, search_gate_lr=1e-2, search_schedule="constant", finetune_epochs=plan.finetune_epochs,
                 finetune_lr=1e-3, finetune_min_lr=1e-5, finetune_warmup_epochs=0.0)
    if ratio:
        given["target_ratio"] = ratio
    given.update(over)
    return config_for(MODEL, dc, **given)


def baseline_config(plan: Plan, data: Path, teacher: str, seed: int) -> Any:
    """Fine-tuning for search + fine-tune epochs: the training SPViT gets in all."""
    return base_config(plan, data, teacher, seed, finetune_epochs=plan.search_epochs + plan.finetune_epochs)


# ------------------------------------------------------------------------------------------ helpers
def test_data(dense: torch.nn.Module) -> Any:
    """The official 10k test set with the model's eval transform (as the `val` of a data source)."""
    from spvit_deploy.train.config import DataConfig
    from spvit_deploy.train.data import build_data

    return build_data(DataConfig(root=f"fashion-mnist:{fashion.DEFAULT_DIR}", batch_size=64, eval_batch_size=500),
                      dense, 0)


def test_top1(model: torch.nn.Module, data: Any) -> float:
    from spvit_deploy.train.loop import Runtime, evaluate_top

    return round(evaluate_top(model.eval(), data, Runtime(device=torch.device("cpu")))["top1"], 2)


def export_module(model: torch.nn.Module, out: Path, tolerance: float = 1e-4) -> float:
    """Export a timm ViT no arch spec describes (pruned heads, fewer blocks) the way `export_onnx`
    exports plain networks (its attention rewrite, dynamo exporter, onnxslim), checked against
    PyTorch with ONNX Runtime; the max abs difference."""
    import onnx

    from spvit_deploy.export.onnx import _torch_export, check_parity, parity_inputs, prepare_for_export, simplify
    from spvit_deploy.export.ort import ort_session

    m = prepare_for_export(model)
    proto = simplify(_torch_export(m, torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(0)), 18))
    ref = copy.deepcopy(model).float().cpu().eval()
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        parity = check_parity(ort_session(tmp, threads=None), ref, parity_inputs(IMG, (1, 3)))
        worst = max(parity.values())
        if not worst <= tolerance:
            raise RuntimeError(f"ONNX Runtime differs from PyTorch by {worst:.3g}")
    return worst


def export_run(run_dir: Path, out: Path) -> float:
    from spvit_deploy.export.onnx import export_onnx
    from spvit_deploy.export.source import load_export_model

    em = load_export_model(run=run_dir)
    return max(export_onnx(em.module, out, spec=em.spec, variant=em.variant).parity.values())


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def heads_and_widths(model: torch.nn.Module) -> dict[str, Any]:
    return {"depth": len(model.blocks),
            "heads": [getattr(b.attn, "num_heads", 0) for b in model.blocks],
            "ffn_widths": [b.mlp.fc1.out_features if hasattr(b.mlp, "fc1") else 0 for b in model.blocks]}


# ------------------------------------------------------------------------------------------ phases
def prepare(work: Path, plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The subset and the dense teacher (trained once; reused on restart)."""
    from safetensors.torch import save_file

    from spvit_deploy.models import create_dense
    from spvit_deploy.train.baselines import finetune_module, module_macs

    split = fashion.write_subset(fashion.DEFAULT_DIR, work / "data", plan.train_per_class, plan.val_per_class, 0)
    done = work / "teacher" / "teacher.json"
    if done.exists():
        return split, json.loads(done.read_text())
    log(f"teacher: {MODEL} at {IMG} px from scratch, {plan.teacher_epochs} epochs on {split['train']} images")
    t0 = time.perf_counter()
    cfg = base_config(plan, work / "data", "", 0, distill="none", finetune_epochs=plan.teacher_epochs,
                      finetune_lr=1e-3, finetune_warmup_epochs=1.0)
    torch.manual_seed(0)
    student = create_dense(MODEL, num_classes=10, img_size=IMG)
    val = finetune_module(cfg, student, work / "teacher", threads=THREADS, progress=True)
    with atomic_path(work / "teacher" / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in student.state_dict().items()}, str(tmp))
    dense = create_dense(MODEL, num_classes=10, img_size=IMG, checkpoint=work / "teacher" / "model.safetensors")
    export_module(dense, work / "onnx" / "dense.onnx")
    info = {"model": MODEL, "img_size": IMG, "epochs": plan.teacher_epochs, "lr": 1e-3, "val_top1": round(val["top1"], 2),
            "test_top1": test_top1(dense, test_data(dense)), "macs": module_macs(dense, IMG), "params": params(dense),
            "onnx": "onnx/dense.onnx", "train_s": round(time.perf_counter() - t0, 1)}
    write_json(done, info)
    return split, info


def one_run(work: Path, plan: Plan, method: str, ratio: float, seed: int, dense_macs: int) -> dict[str, Any]:
    """Train one method at one budget and seed; its MACs, params, accuracy and ONNX file."""
    from spvit_deploy.models import create_dense
    from spvit_deploy.run import load_run
    from spvit_deploy.train import baselines as B
    from spvit_deploy.train.pipeline import compress, finetune

    tag = f"{method}_r{ratio:g}_s{seed}"
    run_dir, onnx = work / "runs" / tag, work / "onnx" / f"{tag}.onnx"
    teacher = str(work / "teacher" / "model.safetensors")
    dense = create_dense(MODEL, num_classes=10, img_size=IMG, checkpoint=teacher).eval()
    budget = int(ratio * dense_macs)
    row: dict[str, Any] = {"method": method, "ratio": ratio, "seed": seed, "budget_macs": budget}
    t0 = time.perf_counter()
    if method == "spvit":
        rep = compress(base_config(plan, work / "data", teacher, seed, ratio), run_dir, resume=True, threads=THREADS,
                       progress=False)
        model = load_run(run_dir).model
        row.update(val_top1=round(rep["compressed"]["top1"], 2), arch={"ops": rep["arch"]["ops"],
                                                                        "ffn_widths": rep["arch"]["ffn_widths"]})
        parity = export_run(run_dir, onnx)
    elif method == "uniform_ffn":
        try:
            spec = B.uniform_ffn_spec(dense, MODEL, IMG, 10, budget)
        except ValueError as e:
            return {**row, "status": "infeasible", "reason": str(e)}
        spec.save(work / "runs" / f"{tag}.arch.json")
        rep = finetune(baseline_config(plan, work / "data", teacher, seed), run_dir, arch=work / "runs" / f"{tag}.arch.json",
                       resume=True, threads=THREADS, progress=False)
        model = load_run(run_dir).model
        row.update(val_top1=round(rep["compressed"]["top1"], 2), arch={"ffn_width": spec.blocks[0].ffn_width})
        parity = export_run(run_dir, onnx)
    else:
        cfg = baseline_config(plan, work / "data", teacher, seed)
        if method == "smaller_dense":
            model = B.depth_cut(dense, budget)
        else:
            from spvit_deploy.train.data import build_data

            data = build_data(cfg.data, dense, seed)
            batches = []
            for x, y in data.train_loader(0):
                batches.append((x, y))
                if len(batches) == plan.taylor_batches:
                    break
            model, ffn_ratio = B.torch_pruning_vit(dense, budget, batches)
            row["tp_ffn_pruning_ratio"] = round(ffn_ratio, 4)
        val = B.finetune_module(cfg, model, run_dir, threads=THREADS)
        row.update(val_top1=round(val["top1"], 2), arch=heads_and_widths(model))
        parity = export_module(model, onnx)
    from spvit_deploy.train.baselines import module_macs

    macs = module_macs(model, IMG)
    row.update(status="done", macs=macs, macs_ratio=round(macs / dense_macs, 4), params=params(model),
               test_top1=test_top1(model, test_data(dense)), onnx=str(onnx.relative_to(work)),
               ort_max_abs_diff=parity, seconds=round(time.perf_counter() - t0, 1))
    return row


def time_models(work: Path, paths: dict[str, str], batches: tuple[int, ...]) -> dict[str, Any]:
    """p50 etc. per model and batch, all models interleaved per batch (ONNX Runtime, CPU, 2 threads)."""
    from spvit_deploy.bench.harness import time_interleaved
    from spvit_deploy.bench.settings import BenchSettings

    waited = wait_for_quiet(threshold_pct=20.0, max_wait_s=300.0)
    out: dict[str, Any] = {"waited_for_quiet_s": waited, "rows": {}}
    for b in batches:
        iters = 200 if b == 1 else 40
        settings = BenchSettings(backends=("onnxruntime",), batches=(b,), threads=THREADS, iters=iters, warmup=10,
                                 rounds=8)
        log(f"latency: batch {b}, {len(paths)} models interleaved, {iters} iterations each")
        rows, _ = time_interleaved("onnxruntime", {k: str(work / v) for k, v in paths.items()}, b, (3, IMG, IMG),
                                   settings)
        for k, r in rows.items():
            out["rows"].setdefault(k, {})[str(b)] = {m: round(r[m], 4) for m in
                                                     ("p50_ms", "p90_ms", "mean_ms", "min_ms", "other_cpu_pct")}
    return out


# ------------------------------------------------------------------------------------------ summary
def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [r for r in results["runs"].values() if r.get("status") == "done"]
    lat = results.get("latency", {}).get("rows", {})
    dense_lat = lat.get("dense", {})
    out = []
    for ratio in results["plan"]["ratios"]:
        for method in METHODS:
            rs = [r for r in rows if r["method"] == method and r["ratio"] == ratio]
            skipped = [r for r in results["runs"].values() if r["method"] == method and r["ratio"] == ratio
                       and r.get("status") == "infeasible"]
            if not rs:
                out.append({"method": method, "ratio": ratio, "n": 0,
                            "reason": skipped[0]["reason"] if skipped else "not run yet"})
                continue

            def ms(key: str, vals: list[float]) -> dict[str, float]:
                return {"mean": round(statistics.mean(vals), 3),
                        "std": round(statistics.stdev(vals), 3) if len(vals) > 1 else 0.0}

            s = {"method": method, "ratio": ratio, "n": len(rs), "seeds": [r["seed"] for r in rs],
                 "test_top1": ms("test", [r["test_top1"] for r in rs]), "val_top1": ms("val", [r["val_top1"] for r in rs]),
                 "macs_ratio": ms("macs", [r["macs_ratio"] for r in rs]), "params": ms("p", [r["params"] for r in rs])}
            for b in ("1", "64"):
                t = [lat[k][b]["p50_ms"] for k in (run_key(r) for r in rs) if b in lat.get(k, {})]
                if t:
                    s[f"p50_ms_b{b}"] = ms("t", t)
                    if b in dense_lat:
                        s[f"speedup_b{b}"] = round(dense_lat[b]["p50_ms"] / statistics.mean(t), 3)
            out.append(s)
    return out


def run_key(r: dict[str, Any]) -> str:
    return f"{r['method']}_r{r['ratio']:g}_s{r['seed']}"


def pm(d: dict[str, float] | None, digits: int = 2) -> str:
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}" if d else "–"


def markdown(results: dict[str, Any]) -> str:
    p, t, env, split = results["plan"], results["teacher"], results["environment"], results["data"]
    lat = results.get("latency", {})
    dl = lat.get("rows", {}).get("dense", {})
    incomplete = [k for k, v in results["runs"].items() if v.get("status") not in ("done", "infeasible")]
    expected = len(p["ratios"]) * len(p["seeds"]) * len(METHODS)
    lines = [
        "# Quality on Fashion-MNIST: SPViT vs real baselines at the same MACs, with measured latency", "",
        f"Data: Fashion-MNIST (Debian `dataset-fashion-mnist`), a stratified subset of {split['train']} training "
        f"images ({p['train_per_class']} per class, seed {split['seed']}); {split['val']} more training images held "
        f"out as the validation split (what runs evaluate while training); **test top-1 on the official 10,000 test "
        f"images** (one image = 0.01 points). Dense teacher: `{MODEL}` at {IMG} px (7x7 patches, 6 blocks, width 64, "
        f"4 heads, FFN 256; {t['macs'] / 1e6:.2f} M MACs, {t['params'] / 1e6:.3f} M params), from scratch, "
        f"{t['epochs']} epochs: test top-1 **{t['test_top1']:.2f}**"
        + (f", ONNX Runtime p50 {dl['1']['p50_ms']:.3f} ms at batch 1, {dl['64']['p50_ms']:.2f} ms at batch 64."
           if dl else "."), "",
        f"Every method starts from the teacher and trains {p['search_epochs'] + p['finetune_epochs']} epochs in all "
        f"with the same soft distillation (alpha 0.7, tau 2), AdamW, gradient clipping and batch {p['batch_size']}: "
        f"SPViT searches {p['search_epochs']} epochs (constant lr 5e-4, gate lr 1e-2) and fine-tunes "
        f"{p['finetune_epochs']} (cosine 1e-3 to 1e-5); the baselines fine-tune "
        f"{p['search_epochs'] + p['finetune_epochs']} epochs on the same cosine schedule. Seeds "
        f"{', '.join(map(str, p['seeds']))} vary training (and Torch-Pruning's Taylor batches); teacher and split are fixed.",
        "",
        "- **spvit**: `compress` with a MACs target (`--target-ratio`), the architecture derived automatically.",
        "- **uniform_ffn**: every attention kept, every FFN cut to one width (largest |fc1 row| x |fc2 col|).",
        "- **smaller_dense**: a smaller dense ViT: the teacher's first blocks, the last one's FFN trimmed to fit.",
        "- **torch_pruning**: Torch-Pruning's timm ViT example (`BasePruner`, `GroupTaylorImportance` on "
        f"{p['taylor_batches']} batches, `prune_num_heads` with the example's head ratio 0.5, fc2 ignored so the "
        "residual width stays), the FFN ratio bisected to land under the budget; then fine-tuned.", "",
        "MACs: every matmul and convolution including the attention matmuls (`spvit_deploy.macs.cost` for specs, "
        "the flop counter / 2 for the others; they agree exactly on the dense model). Latency: each exported ONNX "
        f"model (fp32, the same export rewrites for all) in its own ONNX Runtime worker, {THREADS} threads, all "
        "models interleaved (200 iterations at batch 1, 40 at batch 64), p50 as mean ± std over the seeds' models "
        "(identical architectures differ by up to a third at batch 64: see the per-run list); speedup: dense p50 "
        "over the mean p50.", "",
        "| budget | method | runs | MACs (% dense) | params (k) | test top-1 | val top-1 | p50 ms b1 | p50 ms b64 | "
        "speedup b1 / b64 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in results["summary"]:
        if not s["n"]:
            lines.append(f"| {100 * s['ratio']:.0f}% | {s['method']} | 0 | – | – | – | – | – | – | {s['reason']} |")
            continue
        sp = f"{s.get('speedup_b1', 0):.2f}x / {s.get('speedup_b64', 0):.2f}x" if "speedup_b64" in s else "–"
        lines.append(
            f"| {100 * s['ratio']:.0f}% | {s['method']} | {s['n']} | {100 * s['macs_ratio']['mean']:.1f} | "
            f"{s['params']['mean'] / 1e3:.0f} | {pm(s['test_top1'])} | {pm(s['val_top1'])} | "
            f"{pm(s.get('p50_ms_b1'), 3)} | {pm(s.get('p50_ms_b64'))} | {sp} |")
    lines += ["", "Per run (test top-1, MACs, latency p50 at batch 1 / 64, architecture):", ""]
    for k, r in sorted(results["runs"].items(), key=lambda kv: (-kv[1]["ratio"], kv[1]["method"], kv[1]["seed"])):
        if r.get("status") != "done":
            continue
        lt = lat.get("rows", {}).get(k, {})
        tl = f"{lt['1']['p50_ms']:.3f} / {lt['64']['p50_ms']:.2f} ms" if "64" in lt else "not timed"
        lines.append(f"- {k}: {r['test_top1']:.2f}, {100 * r['macs_ratio']:.1f}% MACs, {tl}, {json.dumps(r['arch'])}")
    lines += ["", f"Environment: {env['cpu_model']}, flags {', '.join(env['cpu_flags']) or 'none'}, "
              f"{env['usable_cpus']} usable CPUs, torch {env['versions'].get('torch')}, onnxruntime "
              f"{env['versions'].get('onnxruntime')}, torch-pruning {results.get('torch_pruning_version')}; code "
              f"{results.get('commit')}; {env['date_utc']}. Latency phase waited {lat.get('waited_for_quiet_s', '–')} s "
              f"for a quiet machine. Wall time: {results['wall_s'] / 60:.0f} min over {len(results['sessions'])} "
              "session(s), not counting waits for other jobs on the shared machine.", ""]
    done = sum(1 for v in results["runs"].values() if v.get("status") in ("done", "infeasible"))
    if done < expected or incomplete or not lat:
        lines += [f"**Incomplete**: {done} of {expected} runs finished"
                  + ("; latency not measured yet" if not lat else "") + ".", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    lat = results.get("latency", {}).get("rows", {})
    if not lat:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    marks = {"spvit": "o", "uniform_ffn": "s", "smaller_dense": "^", "torch_pruning": "D"}
    for ax, b in zip(axes, ("1", "64")):
        for method in METHODS:
            for ratio, fill in ((0.5, True), (0.35, False)):
                pts = [(lat[run_key(r)][b]["p50_ms"], r["test_top1"]) for r in results["runs"].values()
                       if r.get("status") == "done" and r["method"] == method and r["ratio"] == ratio
                       and run_key(r) in lat]
                if pts:
                    ax.scatter(*zip(*pts), marker=marks[method], label=f"{method} {ratio:.0%}",
                               facecolors=None if fill else "none", edgecolors=f"C{METHODS.index(method)}",
                               color=f"C{METHODS.index(method)}")
        if "dense" in lat:
            ax.scatter([lat["dense"][b]["p50_ms"]], [results["teacher"]["test_top1"]], marker="*", s=150, color="k",
                       label="dense teacher")
        ax.set_xlabel(f"ONNX Runtime CPU p50 latency, batch {b} (ms)")
        ax.set_ylabel("test top-1 (%), official 10k")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Fashion-MNIST: accuracy vs measured latency (filled: 50% MACs, open: 35%)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------ main
def save(results: dict[str, Any], out: Path, t_session: float) -> None:
    results["sessions"][-1]["seconds"] = round(time.perf_counter() - t_session - WAITED[0], 1)
    results["sessions"][-1]["lock_wait_s"] = round(WAITED[0], 1)
    results["wall_s"] = round(sum(s["seconds"] for s in results["sessions"]), 1)
    results["summary"] = summarize(results)
    write_json(out / "quality_fashion.json", results)
    write_text(out / "quality_fashion.md", markdown(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ratios", default="0.5,0.35", help="budgets as fractions of the dense MACs")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--work", default="runs/quality_fashion")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--no-latency", action="store_true", help="train only; time later")
    ap.add_argument("--lock", default=None, help="hold this flock file during each heavy phase (each run, the "
                    "teacher, the latency phase) instead of around the whole study")
    for f, v in asdict(Plan()).items():
        ap.add_argument(f"--{f.replace('_', '-')}", type=int, default=v)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    plan = Plan(**{f: getattr(args, f) for f in asdict(Plan())})
    work, out = Path(args.work), Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    ratios = [float(r) for r in args.ratios.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    fashion.source_files(fashion.DEFAULT_DIR)  # one line naming the package when it is missing
    t_session = time.perf_counter()
    path = out / "quality_fashion.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"runs": {}, "sessions": []}
    if results.get("plan") and {k: results["plan"][k] for k in asdict(plan)} != asdict(plan):
        raise SystemExit(f"{path} was made with another plan ({results['plan']}); move it away or pass the same plan")
    results["plan"] = {**asdict(plan), "seeds": seeds, "ratios": ratios}
    results["sessions"].append({"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": 0.0})
    results["benchmark"] = "quality_fashion"
    results["commit"] = os.environ.get("SPVIT_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip() or None
    from importlib import metadata

    results["torch_pruning_version"] = metadata.version("torch-pruning")
    with heavy(args.lock):
        results["data"], results["teacher"] = prepare(work, plan)
    results["environment"] = environment(THREADS)
    save(results, out, t_session)
    log(f"teacher: test top-1 {results['teacher']['test_top1']:.2f} ({results['teacher']['macs'] / 1e6:.2f} M MACs)")
    todo = [(m, r, s) for s in seeds for r in ratios for m in methods]
    t_runs, n_new = time.perf_counter(), 0
    for i, (method, ratio, seed) in enumerate(todo, 1):
        key = f"{method}_r{ratio:g}_s{seed}"
        if results["runs"].get(key, {}).get("status") in ("done", "infeasible"):
            continue
        log(f"[{i}/{len(todo)}] {key} ...")
        results["runs"][key] = {"method": method, "ratio": ratio, "seed": seed, "status": "running"}
        with heavy(args.lock):
            row = one_run(work, plan, method, ratio, seed, results["teacher"]["macs"])
        results["runs"][key] = row
        n_new += 1
        save(results, out, t_session)
        left = sum(1 for m, r, s in todo[i:] if results["runs"].get(f"{m}_r{r:g}_s{s}", {}).get("status") != "done")
        eta = (time.perf_counter() - t_runs) / n_new * left
        log(f"[{i}/{len(todo)}] {key}: {row['status']}" + (
            f", test top-1 {row['test_top1']:.2f}, {100 * row['macs_ratio']:.1f}% MACs, {row['seconds']:.0f} s"
            if row["status"] == "done" else f" ({row['reason']})") + f"; about {eta / 60:.0f} min of runs left")
    if not args.no_latency:
        paths = {"dense": results["teacher"]["onnx"]}
        paths.update({k: r["onnx"] for k, r in results["runs"].items() if r.get("status") == "done"})
        with heavy(args.lock):
            results["latency"] = time_models(work, paths, (1, 64))
            results["latency_environment"] = environment(THREADS)
    save(results, out, t_session)
    plot(results, out / "quality_fashion.png")
    log(f"wrote {out / 'quality_fashion.json'}, .md, .png")


if __name__ == "__main__":
    main()
