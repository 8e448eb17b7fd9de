"""The offline demo on real data: scikit-learn's handwritten digits (1,797 8x8 images, 10
classes) upsampled to 32x32, a pre-trained ViT-Nano teacher (shipped with the package, made by
`benchmarks/digits_teacher.py`; or trained from scratch), then SPViT compression to about half
its MACs, fine-tuning with distillation and materialization; `DIR/report.json`. With a target speedup
(`run_demo(out, target_speedup=1.5)`) the demo profiles a latency table of the model on ONNX Runtime
(`DIR/lut.json`, batch 16) and compresses to that measured speedup instead of the MACs target.

Every step is resumable and idempotent: a re-run skips what is done and continues what was
interrupted. The demo runs every stage (train, export, bench), so it sits above them all.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._io import write_json, write_text
from .errors import SpvitError, require
from .train.config import DataConfig, TrainConfig
from .train.report import environment

MODEL = "vit_nano_patch4_32"
IMG = 32
SHIPPED_TEACHER = Path(__file__).resolve().parent / "data" / "digits_teacher"
CLASSES = 10
LATENCY_BACKEND, LATENCY_BATCH = "onnxruntime", 16  # the latency-targeted demo: ONNX Runtime on this CPU, batch 16


@dataclass(frozen=True)
class DemoPlan:
    """The demo's budget: teacher, search and fine-tune epochs, target, batch."""

    teacher_epochs: int = 40
    teacher_lr: float = 1e-3
    search_epochs: int = 8
    finetune_epochs: int = 20
    target_ratio: float = 0.5
    batch_size: int = 32
    val_fraction: float = 0.2
    per_class: int = 0  # 0: every digit; >0: at most this many per class (quick runs)


QUICK = DemoPlan(teacher_epochs=3, search_epochs=1, finetune_epochs=1, per_class=24, batch_size=16)


def prepare_digits(root: Path, seed: int = 0, val_fraction: float = 0.2, per_class: int = 0) -> dict[str, Any]:
    """Write the digits as an ImageFolder (`train/`, `val/`, 32x32 grayscale PNGs) with a seeded,
    stratified split; idempotent (`split.json` records what was written)."""
    sklearn = require("sklearn.datasets", "data", "scikit-learn")
    image = require("PIL.Image", "data", "pillow")
    marker = root / "split.json"
    want = {"dataset": "sklearn.datasets.load_digits", "seed": seed, "val_fraction": val_fraction,
            "per_class": per_class, "size": IMG}
    if marker.exists():
        done = json.loads(marker.read_text())
        if all(done.get(k) == v for k, v in want.items()):
            return done
        raise SpvitError(f"'{root}' holds another split of the digits ({marker}); use a new --out")
    digits = sklearn.load_digits()
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "val": 0}
    sha = hashlib.sha256()
    for cls in range(10):
        idx = np.flatnonzero(digits.target == cls)
        idx = rng.permutation(idx)
        if per_class:
            idx = idx[:per_class]
        n_val = max(1, int(round(len(idx) * val_fraction)))
        for split, part in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = root / split / str(cls)
            folder.mkdir(parents=True, exist_ok=True)
            for i in sorted(part.tolist()):
                pixels = (digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
                img = image.fromarray(pixels, mode="L").resize((IMG, IMG), image.BICUBIC)
                img.save(folder / f"{i:04d}.png")
                sha.update(f"{split}/{cls}/{i}".encode())
                counts[split] += 1
    info = {**want, **counts, "split_sha256": sha.hexdigest()}
    write_json(marker, info)
    return info


def demo_config(data_root: Path, plan: DemoPlan, teacher_weights: Path, seed: int) -> TrainConfig:
    """The compress config of the demo: ViT-Nano from the teacher's weights, target half the MACs (what
    `config_for` gives for the ten digit folders; the folders need not exist yet)."""
    from .macs import cost
    from .models import dims_for
    from .train.config import make_config

    dims = dims_for(MODEL, num_classes=CLASSES)
    return make_config(
        MODEL, _data_cfg(data_root, plan), dims, cost(dims).gmacs, img_size=0, num_classes=0,
        checkpoint=str(teacher_weights), target_ratio=plan.target_ratio, seed=seed, amp="none",
        distill="soft", distill_alpha=0.7, distill_tau=2.0, clip_grad=1.0, checkpoint_every=50,
        search_epochs=plan.search_epochs, search_lr=5e-4, search_gate_lr=1e-2, search_schedule="constant",
        finetune_epochs=plan.finetune_epochs, finetune_lr=1e-3, finetune_min_lr=1e-5, finetune_warmup_epochs=0.0,
    )


def train_teacher(data_root: Path, out: Path, plan: DemoPlan, seed: int, progress: bool = True,
                  threads: int = 0) -> dict[str, Any]:
    """Train the dense ViT-Nano from scratch (resumable); writes `out/model.safetensors` and
    `out/teacher.json` (its val/ accuracy) and returns the latter."""
    from safetensors.torch import save_file

    from . import macs as M
    from .models import create_dense, dims_for
    from .train.data import build_data
    from .train.distill import task_loss
    from .train.loop import LoopOptions, MetricsLog, Schedule, Stage, evaluate_top, param_groups, run_stage, setup_runtime

    done = out / "teacher.json"
    if done.exists():
        return json.loads(done.read_text())
    rt = setup_runtime("cpu", threads)
    if rt.distributed:
        raise SpvitError("the demo runs in one process; start it without torchrun")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = create_dense(MODEL, num_classes=10).train()
    data = build_data(_data_cfg(data_root, plan), model, seed)
    spe = data.steps_per_epoch
    no_decay = set(model.no_weight_decay())
    named = list(model.named_parameters())
    opt = torch.optim.AdamW(param_groups(named, plan.teacher_lr, 0.05, lambda n, p: n in no_decay))
    total = plan.teacher_epochs * spe
    schedule = Schedule("cosine", total, warmup_steps=max(1, total // 10), min_ratio=0.01)

    def loss_fn(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return task_loss(m(x), y, 0.1), {}

    stage = Stage(name="teacher", model=model, optimizers={"weights": opt}, schedules={"weights": schedule},
                  loss_fn=loss_fn, evaluate=lambda: evaluate_top(model, data, rt), epochs=plan.teacher_epochs)
    opts = LoopOptions(seed=seed, clip_grad=1.0, checkpoint_every=100, progress=progress)
    ev = run_stage(stage, data, rt, opts, out / "checkpoints" / "teacher.pt", MetricsLog(out / "metrics.jsonl", True),
                   resume=True)
    from ._io import atomic_path

    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    cost = M.cost(dims_for(MODEL, num_classes=10))
    info = {"model": MODEL, "epochs": plan.teacher_epochs, **ev, "gmacs": cost.gmacs, "params": cost.params}
    write_json(done, info)
    return info


def _teacher_recipe(plan: DemoPlan, seed: int, split: dict[str, Any]) -> dict[str, Any]:
    """What determines the teacher: the split it saw and its training budget."""
    return {"model": MODEL, "seed": seed, "split_sha256": split["split_sha256"], "epochs": plan.teacher_epochs,
            "lr": plan.teacher_lr, "batch_size": plan.batch_size}


def shipped_teacher(plan: DemoPlan, seed: int, split: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """Copy the package's pre-trained teacher into `out` when it was made with this split and
    recipe (its `teacher.json` says so); None when there is none that fits."""
    import shutil

    from ._io import atomic_path

    info_path = SHIPPED_TEACHER / "teacher.json"
    if not info_path.is_file() or not (SHIPPED_TEACHER / "model.safetensors").is_file():
        return None
    info = json.loads(info_path.read_text())
    if info.get("recipe") != _teacher_recipe(plan, seed, split):
        return None
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        shutil.copyfile(SHIPPED_TEACHER / "model.safetensors", tmp)
    info = {**info, "source": "shipped with the package (benchmarks/digits_teacher.py)"}
    write_json(out / "teacher.json", info)
    return info


def build_shipped_teacher(work: Path, dest: Path = SHIPPED_TEACHER, seed: int = 0, threads: int = 0) -> dict[str, Any]:
    """Train the demo's teacher from scratch on the demo's split and write it, with its recipe,
    accuracy and environment, to `dest` (the package's data folder by default)."""
    import shutil

    from ._io import atomic_path

    plan = DemoPlan()
    split = prepare_digits(work / "data", seed, plan.val_fraction, plan.per_class)
    t0 = time.perf_counter()
    info = train_teacher(work / "data", work / "teacher", plan, seed, progress=True, threads=threads)
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / "model.safetensors") as tmp:
        shutil.copyfile(work / "teacher" / "model.safetensors", tmp)
    info = {**info, "recipe": _teacher_recipe(plan, seed, split), "train_seconds": round(time.perf_counter() - t0, 1),
            "environment": environment()}
    write_json(dest / "teacher.json", info)
    return info


def _data_cfg(root: Path, plan: DemoPlan) -> DataConfig:
    """Digits augmentation: mild crops, no flips (a flipped 2 is not a 2), no colour jitter (grayscale)."""
    return DataConfig(root=str(root), batch_size=plan.batch_size, scale=(0.6, 1.0), hflip=0.0, color_jitter=0.0,
                      smoothing=0.1)


def later_stages(run_dir: Path, out: Path, log: Any) -> dict[str, Any]:
    """Export to ONNX and benchmark dense vs compressed, when those stages are installed
    (`spvit_deploy.export`, `spvit_deploy.bench` and the `onnx` extra); what was skipped and why."""
    res: dict[str, Any] = {}
    if importlib.util.find_spec("spvit_deploy.export") is None:
        return {"export": {"skipped": "spvit_deploy.export is not part of this version"}}
    try:
        from .export.onnx import export_onnx
        from .export.source import load_export_model

        log("demo: exporting the compressed network to ONNX")
        em = load_export_model(run=run_dir)
        rep = export_onnx(em.module, out / "export" / "model.onnx", spec=em.spec, variant=em.variant)
        res["export"] = {"onnx": str((out / "export" / "model.onnx").relative_to(out)),
                         "ort_vs_torch_max_abs_diff": rep.parity}
    except SpvitError as e:
        return {"export": {"skipped": str(e)}}
    if importlib.util.find_spec("spvit_deploy.bench") is None:
        res["benchmark"] = {"skipped": "spvit_deploy.bench is not part of this version"}
        return res
    try:
        from .bench.harness import BenchSettings, benchmark

        log("demo: timing dense vs compressed with ONNX Runtime")
        b = benchmark(out / "bench", run=run_dir, settings=BenchSettings(backends=("onnxruntime",), batches=(1, 64)),
                      log=lambda msg: None)
        res["benchmark"] = {"folder": "bench", "speedups": b.get("speedups"), "skipped": b.get("skipped")}
    except SpvitError as e:
        res["benchmark"] = {"skipped": str(e)}
    return res


def latency_config(cfg: TrainConfig, lut: Path, target_speedup: float) -> TrainConfig:
    """The demo's compress config with a speedup target on the latency table `lut` (batch 16) instead of
    the MACs target."""
    return replace(cfg, target_ratio=0.0, target_speedup=target_speedup, latency_lut=str(lut),
                   latency_batch=LATENCY_BATCH)


def check_demo_mode(out: Path, target_speedup: float | None) -> None:
    """Refuse a folder that holds the demo's other mode, or a latency-targeted demo for another speedup: its
    run, table and report would mix with this one (one line; reads only)."""
    cfg_path, lut = out / "run" / "config.json", out / "lut.json"
    if cfg_path.is_file():
        had = float(json.loads(cfg_path.read_text()).get("target_speedup") or 0.0) or None
    elif lut.exists():
        had = -1.0  # a latency-targeted demo that stopped before its run started (speedup unknown)
    else:
        return
    if target_speedup is None and had is not None:
        raise SpvitError(f"'{out}' holds a latency-targeted demo (--target-speedup"
                         f"{'' if had < 0 else f' {had:g}'}); use another --out for the plain demo")
    if target_speedup is not None and had is None:
        raise SpvitError(f"'{out}' holds the plain demo (a MACs target); use another --out for --target-speedup "
                         f"{target_speedup:g}")
    if target_speedup is not None and had not in (-1.0, target_speedup):
        raise SpvitError(f"'{out}' holds the demo for --target-speedup {had:g}; use another --out for "
                         f"--target-speedup {target_speedup:g}")


def check_latency_target(cfg: TrainConfig) -> None:
    """`compress`'s own checks of the config and its latency target (the table fits this machine, runtime and
    model; the target lies between the dense model and every block skipped), before anything is written."""
    from .models import dims_for
    from .train.pipeline import resolve_latency

    cfg.validate()
    resolve_latency(cfg, dims_for(MODEL, num_classes=CLASSES))


def latency_table(out: Path, cfg: TrainConfig, target_speedup: float, log: Any, progress: bool) -> bool:
    """`out/lut.json`, the model's latency table on ONNX Runtime at batch 16, reused when `check_here` accepts
    it, else profiled (into a temporary folder, moved into `out` once the target is checked); `cfg`'s target is
    checked against it before anything is written. True when it was profiled here."""
    from ._io import atomic_path
    from .latency.profile import profile_latency

    lut = out / "lut.json"
    if lut.exists():
        try:  # the table alone (check_here, this model, batch 16): a config without a target
            check_latency_target(latency_config(cfg, lut, 0.0))
        except SpvitError as e:
            log(f"demo: [1/5] {lut} does not fit here ({e}); profiling it again")
        else:
            check_latency_target(latency_config(cfg, lut, target_speedup))
            log(f"demo: [1/5] latency table: reusing {lut}")
            return False
    log(f"demo: [1/5] profiling the latency table of {MODEL} on ONNX Runtime (CPU, batch {LATENCY_BATCH}) -> {lut}")
    with tempfile.TemporaryDirectory(prefix="spvit-demo-lut-") as tmp:
        fresh = Path(tmp) / "lut.json"
        profile_latency(MODEL, fresh, backend=LATENCY_BACKEND, batches=(LATENCY_BATCH,), num_classes=CLASSES,
                        log=None if progress else (lambda msg: None))
        check_latency_target(latency_config(cfg, fresh, target_speedup))
        with atomic_path(lut) as part:
            shutil.copyfile(fresh, part)
    return True


def run_demo(out: str | Path, *, quick: bool = False, seed: int = 0, export: bool = True, progress: bool = True,
             threads: int = 0, train_from_scratch: bool = False, target_speedup: float | None = None
             ) -> dict[str, Any]:
    """The whole demo into `out` (resumable: a re-run continues or reuses what is there); the report.

    The teacher is the package's pre-trained one where it fits the split and recipe (not in
    `quick` runs, whose subset it has partly seen); `train_from_scratch` trains it here instead.
    `target_speedup`: compress to that speedup over the dense model, measured on ONNX Runtime (CPU, batch 16)
    with a latency table profiled into `out/lut.json`, instead of half the MACs."""
    from .train.pipeline import compress

    out = Path(out)
    plan = QUICK if quick else DemoPlan()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    if target_speedup is not None and not target_speedup > 0:
        raise SpvitError(f"--target-speedup {target_speedup:g} must be positive (a speedup over the dense model)")
    check_demo_mode(out, target_speedup)
    if threads:
        torch.set_num_threads(threads)
    parts: dict[str, float] = {}  # the parts this session computed (not reused)

    def timed(name: str, fn: Any, reused: bool) -> Any:
        t = time.perf_counter()
        r = fn()
        if not reused:
            parts[name] = round(time.perf_counter() - t, 2)
        return r

    run_dir = out / "run"
    cfg = demo_config(out / "data", plan, out / "teacher" / "model.safetensors", seed)
    run_done = (run_dir / "report.json").exists() and (run_dir / "model.safetensors").exists()
    n, k = (5, 1) if target_speedup is not None else (4, 0)
    if target_speedup is not None:
        if run_done:
            log(f"demo: [1/5] latency table: {out / 'lut.json'} (the run is complete)")
        else:
            t = time.perf_counter()
            if latency_table(out, cfg, target_speedup, log, progress):
                parts["latency_table"] = round(time.perf_counter() - t, 2)
        cfg = latency_config(cfg, out / "lut.json", target_speedup)
    log(f"demo: [{k + 1}/{n}] digits -> {out / 'data'} (seeded stratified split, {plan.val_fraction:.0%} held out)")
    split = timed("data", lambda: prepare_digits(out / "data", seed, plan.val_fraction, plan.per_class),
                  reused=(out / "data" / "split.json").exists())
    done = out / "teacher" / "teacher.json"
    shipped = None if (done.exists() or quick or train_from_scratch) else shipped_teacher(plan, seed, split,
                                                                                          out / "teacher")
    if done.exists() and shipped is None:
        teacher = json.loads(done.read_text())
        log(f"demo: [{k + 2}/{n}] the dense {MODEL} teacher: reusing {done.parent} "
            f"(held-out top-1 {teacher['top1']:.2f}%)")
    elif shipped is not None:
        log(f"demo: [{k + 2}/{n}] the dense {MODEL} teacher: pre-trained, shipped with the package "
            f"(held-out top-1 {shipped['top1']:.2f}%; --train-teacher trains one here)")
        teacher = shipped
    else:
        log(f"demo: [{k + 2}/{n}] training the dense {MODEL} teacher from scratch ({plan.teacher_epochs} epochs)")
        teacher = timed("teacher", lambda: train_teacher(out / "data", out / "teacher", plan, seed, progress, threads),
                        reused=False)
    goal = (f"to {target_speedup:g}x the dense model's speed on ONNX Runtime (batch {LATENCY_BATCH}, calibrated "
            "by timing)" if target_speedup is not None else f"to {plan.target_ratio:.0%} of the MACs")
    log(f"demo: [{k + 3}/{n}] SPViT: search {plan.search_epochs} epochs {goal}, fine-tune "
        f"{plan.finetune_epochs} epochs with distillation, materialize -> {run_dir}")
    if run_done:
        rep = json.loads((run_dir / "report.json").read_text())
    else:
        rep = timed("compress", lambda: compress(cfg, run_dir, resume=True, threads=threads, progress=progress),
                    reused=False)
    log(f"demo: [{k + 4}/{n}] export and benchmark (when installed)")
    later = timed("export_benchmark", lambda: later_stages(run_dir, out, log), reused=False) if export else {}
    return _demo_report(out, plan, split, teacher, rep, later, parts, time.perf_counter() - t0, quick,
                        target_speedup)


def _demo_report(out: Path, plan: DemoPlan, split: dict[str, Any], teacher: dict[str, Any], rep: dict[str, Any],
                 later: dict[str, Any], parts: dict[str, float], session: float, quick: bool,
                 target_speedup: float | None = None) -> dict[str, Any]:
    """`out/report.json` and `out/report.md`; `seconds` sums the sessions that trained something."""
    timings_path = out / "timings.json"
    sessions = json.loads(timings_path.read_text())["sessions"] if timings_path.exists() else []
    if {"data", "teacher", "compress", "latency_table"} & set(parts):
        sessions.append({"seconds": round(session, 2), "parts": parts})
        write_json(timings_path, {"sessions": sessions})
    d, c = rep["dense"], rep["compressed"]
    report = {
        "dense": {"top1": d["top1"], "top5": d["top5"], "gmacs": d["gmacs"], "params": d["params"]},
        "compressed": {"top1": c["top1"], "top5": c["top5"], "gmacs": c["gmacs"], "params": c["params"],
                       "macs_ratio": round(c["gmacs"] / d["gmacs"], 4),
                       "target_ratio": plan.target_ratio if target_speedup is None else None,
                       "target_error": rep["arch"]["target_error"], "ops": rep["arch"]["ops"],
                       "ffn_widths": rep["arch"]["ffn_widths"]},
        "top1_change": round(c["top1"] - d["top1"], 4),
        **({"latency": latency_summary(rep["latency"], target_speedup)} if target_speedup is not None else {}),
        "seconds": round(sum(s["seconds"] for s in sessions), 2),
        "sessions": sessions,
        "quick": quick,
        "data": split,
        "teacher": teacher,
        "plan": plan.__dict__,
        "run": "run",
        **later,
        "environment": environment(),
    }
    write_json(out / "report.json", report)
    write_text(out / "report.md", _demo_markdown(report))
    return report


def latency_summary(lat: dict[str, Any], target_speedup: float) -> dict[str, Any]:
    """The demo report's latency section from the run's (`compress`'s `report.json` `latency`): target,
    predicted and measured speedup, the miss, the calibration's iterations."""
    m = lat.get("measured") or {}
    measured = {k: m.get(k) for k in ("dense_ms", "compressed_ms", "speedup", "p50_speedup")}
    return {"table": "lut.json", "backend": lat["backend"], "batch": lat["batch"], "threads": lat["threads"],
            "target_speedup": target_speedup, "predicted_speedup": lat["predicted_speedup"],
            "predicted_ms": lat["predicted_ms"], "dense_predicted_ms": lat["dense_predicted_ms"],
            "measured": measured,
            "miss": round(m["speedup"] / target_speedup - 1, 4) if m.get("speedup") else None,
            "calibration": lat.get("calibration")}


def _latency_markdown(r: dict[str, Any]) -> list[str]:
    lat, c = r["latency"], r["compressed"]
    m, cal = lat["measured"], lat["calibration"]
    profiled = [s["parts"]["latency_table"] for s in r["sessions"] if "latency_table" in s["parts"]]
    lines = [
        f"Latency target: {lat['target_speedup']:g}x the dense model's speed on {lat['backend']} (CPU, batch "
        f"{lat['batch']}, {lat['threads']} threads), latency table `lut.json`"
        f"{f' profiled in {profiled[-1]:.0f} s' if profiled else ''}.", "",
        "| speedup over the dense model | value | ms per batch (dense -> compressed) |", "|---|---:|---:|",
        f"| target | {lat['target_speedup']:.3f}x | |",
        f"| predicted by the table | {lat['predicted_speedup']:.3f}x | {lat['dense_predicted_ms']:.4g} -> "
        f"{lat['predicted_ms']:.4g} |",
    ]
    if m.get("speedup"):
        lines.append(f"| measured (dense and compressed timed interleaved, after fine-tuning) | {m['speedup']:.3f}x | "
                     f"{m['dense_ms']:.4g} -> {m['compressed_ms']:.4g} |")
        lines += ["", f"Measured speedup {100 * lat['miss']:+.1f}% off the target."]
    if cal:
        its = "; ".join(f"{i['goal_predicted_speedup']:.3f}x -> {i['measured_speedup']:.3f}x"
                        for i in cal["iterations"])
        lines.append(f"Calibration before fine-tuning (predicted speedup asked -> measured, random weights): {its}; "
                     f"kept iteration {cal['chosen'] + 1} of {len(cal['iterations'])}.")
    lines += ["", f"Compressed MACs: {100 * c['macs_ratio']:.1f}% of the dense model ({1 / c['macs_ratio']:.2f}x "
                  f"fewer); top-1 change {r['top1_change']:+.2f} points."]
    return lines


def _demo_markdown(r: dict[str, Any]) -> str:
    d, c, s = r["dense"], r["compressed"], r["data"]
    lat = "latency" in r
    lines = [
        f"# spvit-deploy demo: SPViT{' to a latency target' if lat else ''} on real handwritten digits, offline, "
        "on a CPU", "",
        f"Data: scikit-learn's digits ({s['train']} train / {s['val']} held-out images, 8x8 upsampled to 32x32, "
        f"stratified split with seed {s['seed']}{', quick subset' if r['quick'] else ''}). "
        f"Model: {MODEL} teacher trained from scratch for {r['teacher']['epochs']} epochs"
        f"{' (pre-trained, shipped with the package)' if r['teacher'].get('source') else ' (in this run)'}."
        + (f" SPViT: search {r['plan']['search_epochs']} epochs, fine-tune {r['plan']['finetune_epochs']} epochs."
           if lat else ""), "",
        "| model | held-out top-1 (%) | top-5 (%) | GMACs | params |", "|---|---|---|---|---|",
        f"| dense teacher | {d['top1']:.2f} | {d['top5']:.2f} | {d['gmacs']:.4g} | {d['params']:,} |",
        f"| SPViT compressed | {c['top1']:.2f} | {c['top5']:.2f} | {c['gmacs']:.4g} | {c['params']:,} |", "",
    ]
    if lat:
        lines += _latency_markdown(r)
    else:
        lines.append(f"Compressed MACs: {100 * c['macs_ratio']:.1f}% of the dense model (target "
                     f"{100 * c['target_ratio']:.0f}%, architecture {100 * c['target_error']:+.2f}% off the target); "
                     f"top-1 change {r['top1_change']:+.2f} points.")
    lines += [
        f"Attention per block: {' '.join(c['ops'])}; FFN widths: {' '.join(map(str, c['ffn_widths']))}.", "",
        f"Time: {r['seconds']:.0f} s on {r['environment']['threads']} threads. Details: `run/report.md` "
        "(per-block choices, search plot), `run/metrics.jsonl`.",
    ]
    if "export" in r:
        e = r["export"]
        lines += ["", f"Export: {e.get('skipped') or e.get('onnx')}"]
    if "benchmark" in r:
        b = r["benchmark"]
        if b.get("speedups"):
            lines += ["", "| backend | batch | p50 speedup | MACs ratio |", "|---|---|---|---|"]
            lines += [f"| {x['backend']} | {x['batch']} | {x['p50_speedup']:.2f}x | {x['macs_ratio']:.2f}x |"
                      for x in b["speedups"]]
        elif b.get("skipped"):
            lines += ["", f"Benchmark skipped: {b['skipped']}"]
    return "\n".join(lines) + "\n"
