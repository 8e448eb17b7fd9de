"""The compress pipeline: search -> derive the spec at the target -> fine-tune -> materialize,
each stage resumable, in one run folder. `search` and `finetune` run the stages alone.

Run folder: `config.json`, `metrics.jsonl`, `dense.json` (the dense model on `val/`),
`checkpoints/<stage>.pt` (+ `.json`, the config it started with), after search `arch.json`,
`search.safetensors` and `search_state.json` (the searched supernet and what rebuilds it), after
fine-tuning the plain network (`model.safetensors`, `meta.json`, see `run.save_run`), and
`report.json` / `report.md`.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import macs as M
from .._io import write_json
from ..errors import SpvitError
from ..families import ModelDims
from ..models import create_dense, dims_for, resolve_model_name
from ..spec import ArchSpec, load_spec, resolve_spec
from .config import TrainConfig
from .data import Data, build_data
from .gate_search import LatencyTarget
from .folders import check_image_folder
from .loop import LoopOptions, MetricsLog, Runtime, close_runtime, evaluate_top, resolve_amp, run_stage, setup_runtime

SEARCH_WEIGHTS = "search.safetensors"
# fields that do not change what a stage computes; a resume may change them
FREE_FIELDS = {"checkpoint_every", "data.workers", "data.eval_batch_size", "recipe"}
STAGE_FIELDS = {"search": ("finetune.",),  # ignored per stage
                "finetune": ("search.", "target_gmacs", "target_ratio", "target_latency_ms", "target_speedup",
                             "latency_calibration", "ffn_multiple")}


@dataclass
class Job:
    """Everything the stages share: the process's runtime, config, data, dense model and teacher."""

    rt: Runtime
    cfg: TrainConfig
    out: Path
    model_name: str
    dims: ModelDims
    data: Data
    dense: nn.Module
    teacher: nn.Module | None
    amp: torch.dtype | None
    log: MetricsLog
    opts: LoopOptions
    resume: bool

    def ckpt(self, stage: str) -> Path:
        return self.out / "checkpoints" / f"{stage}.pt"


def resolve_target(cfg: TrainConfig, dims: ModelDims) -> float | None:
    """The target in MACs (None for a latency target); one-line errors when it is missing, above the dense
    model or unreachable."""
    dense, floor = M.cost(dims).macs, dims.fixed_macs
    if cfg.target_latency_ms or cfg.target_speedup:
        return None
    if not (cfg.target_gmacs or cfg.target_ratio):
        raise SpvitError("give a target: --target-gmacs X or --target-ratio R (a fraction of the dense MACs), "
                         "or --target-latency-ms X / --target-speedup R with --latency-lut")
    target = cfg.target_gmacs * 1e9 if cfg.target_gmacs else cfg.target_ratio * dense
    if target > dense * (1 + 1e-9):
        raise SpvitError(f"target {target / 1e9:.4g} GMACs is above the dense model's {dense / 1e9:.4g} GMACs; "
                         "give a smaller --target-gmacs or a --target-ratio <= 1")
    if target < floor:
        raise SpvitError(f"target {target / 1e9:.4g} GMACs is below the smallest reachable {floor / 1e9:.4g} GMACs "
                         "(every attention skipped, every FFN unit pruned); give a larger target")
    return target


def resolve_latency(cfg: TrainConfig, dims: ModelDims) -> LatencyTarget | None:
    """The latency table of `cfg` (checked: this machine and runtime, this model) and the latency target in
    predicted ms; None without a table. One-line errors for a bad or foreign table and for a target faster
    than every block skipped or slower than the dense model."""
    if not cfg.latency_lut:
        return None
    from ..latency.predict import check_dims_fit, dense_prediction, floor_prediction
    from ..latency.table import check_here, load_lut

    lut = load_lut(cfg.latency_lut)
    check_dims_fit(lut, dims, resolve_model_name(cfg.model))
    check_here(lut, f"latency table '{cfg.latency_lut}'")
    batch = lut.table(cfg.latency_batch or None).batch
    dense, floor = dense_prediction(lut, batch), floor_prediction(lut, batch)
    ms = cfg.target_latency_ms or (dense / cfg.target_speedup if cfg.target_speedup else None)
    if ms is not None and ms > dense * (1 + 1e-9):
        raise SpvitError(f"latency target {ms:.4g} ms is slower than the dense model ({dense:.4g} ms predicted at "
                         f"batch {batch}); give a smaller --target-latency-ms or a --target-speedup >= 1")
    if ms is not None and ms < floor:
        raise SpvitError(f"latency target {ms:.4g} ms is faster than the fastest reachable {floor:.4g} ms (every "
                         f"attention skipped, every FFN unit pruned; speedup {dense / floor:.3g}x at batch {batch}); "
                         "give a larger target")
    from ..latency.table import default_ffn_multiple

    return LatencyTarget(lut=lut, batch=batch, dense_ms=dense, floor_ms=floor, ms=ms,
                         speedup=cfg.target_speedup or None, ffn_multiple=cfg.ffn_multiple or default_ffn_multiple(lut))


def check_inputs(cfg: TrainConfig, need_target: bool) -> tuple[ModelDims, float | None]:
    """Cheap checks before anything is built: data layout, class count, model name, target."""
    cfg.validate()
    classes = check_image_folder(cfg.data.root)
    if cfg.num_classes and cfg.num_classes != len(classes):
        raise SpvitError(f"--num-classes {cfg.num_classes} but {cfg.data.root}/train has {len(classes)} class "
                         "folders; drop --num-classes or fix the data")
    dims = dims_for(cfg.model, num_classes=len(classes), img_size=cfg.img_size or None)
    target = resolve_target(cfg, dims) if need_target else None
    resolve_latency(cfg, dims)  # a bad table or an unreachable latency target fails before anything is built
    return dims, target


def open_job(cfg: TrainConfig, out: str | Path, stages: tuple[str, ...], resume: bool, device: str = "auto",
             threads: int = 0, progress: bool = True, dense: nn.Module | None = None) -> Job:
    """Join the job, claim the run folder, build data, dense model and teacher."""
    dims, _ = check_inputs(cfg, need_target="search" in stages)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpvitError(f"--out '{out}' exists and is not a folder")
    rt = setup_runtime(device, threads)
    try:
        for stage in stages:  # every rank reads, then rank 0 writes: no rank sees this job's own files
            _claim_stage(out, stage, cfg, resume)
        torch.manual_seed(cfg.seed)  # random weights are the same on every rank and in every run
        if dense is None:  # before the run folder is written: a damaged checkpoint leaves nothing behind
            dense = create_dense(cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint or None,
                                 num_classes=dims.num_classes, img_size=cfg.img_size or None)
        rt.barrier()
        if rt.is_main:
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_json(out / "config.json", cfg.to_dict())
            for stage in stages:
                side = out / "checkpoints" / f"{stage}.json"
                if not side.exists():
                    write_json(side, cfg.to_dict())
        rt.barrier()
        dense = dense.to(rt.device).eval().requires_grad_(False)  # stages train deep copies of it
        teacher = None
        if cfg.distill != "none":
            teacher = dense
            if not (cfg.pretrained or cfg.checkpoint) and rt.is_main:
                print("note: random dense weights (--no-pretrained): distilling from a random teacher", file=sys.stderr)
        data = build_data(cfg.data, dense, cfg.seed, rt.world, rt.rank)
        amp = resolve_amp(cfg.amp, rt.device)
        opts = LoopOptions(seed=cfg.seed, amp=amp, clip_grad=cfg.clip_grad, checkpoint_every=cfg.checkpoint_every,
                           mixup=_mixup(cfg, dims.num_classes), progress=progress)
        log = MetricsLog(out / "metrics.jsonl", enabled=rt.is_main)
        return Job(rt=rt, cfg=cfg, out=out, model_name=resolve_model_name(cfg.model), dims=dims, data=data,
                   dense=dense, teacher=teacher, amp=amp, log=log, opts=opts, resume=resume)
    except BaseException:
        close_runtime(rt)
        raise


def _claim_stage(out: Path, stage: str, cfg: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite a stage without --resume, or to resume it with another config."""
    ckpt, side = out / "checkpoints" / f"{stage}.pt", out / "checkpoints" / f"{stage}.json"
    if not resume:
        if ckpt.exists() or side.exists():
            raise SpvitError(f"'{out}' already holds a {stage} run; pass --resume to continue it or choose a new --out")
        return
    if side.exists():
        old = TrainConfig.from_dict(json.loads(side.read_text()), where=str(side))
        ignored = STAGE_FIELDS[stage]
        diff = [k for k in cfg.differences(old) if k not in FREE_FIELDS and not k.startswith(ignored)]
        if diff:
            raise SpvitError(f"cannot resume the {stage} stage in '{out}' with other settings ({', '.join(diff[:4])} "
                             "differ); repeat the original command with --resume, or choose a new --out")


def _mixup(cfg: TrainConfig, num_classes: int) -> Any:
    """timm's Mixup/CutMix with its numpy draws seeded per batch (so resume stays exact), or None."""
    if not (cfg.data.mixup or cfg.data.cutmix):
        return None
    import numpy as np
    from timm.data import Mixup

    mix = Mixup(mixup_alpha=cfg.data.mixup, cutmix_alpha=cfg.data.cutmix, label_smoothing=cfg.data.smoothing,
                num_classes=num_classes)

    def apply(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = np.random.get_state()
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))  # drawn from the checkpointed torch RNG
        try:
            return mix(x, y)
        finally:
            np.random.set_state(state)

    return apply


def dense_eval(job: Job) -> dict[str, Any]:
    """The dense model on `val/` (cached in `dense.json`)."""
    path = job.out / "dense.json"
    if path.exists():
        return json.loads(path.read_text())
    res = evaluate_top(job.dense, job.data, job.rt, job.amp)
    cost = M.cost(job.dims)
    res.update({"gmacs": cost.gmacs, "params": cost.params})
    if job.rt.is_main:
        write_json(path, res)
        job.log.write({"stage": "dense", "kind": "eval", "epoch": 0, "step": 0, **res})
    return res


def run_search(job: Job, target_macs: float | None, latency: LatencyTarget | None = None
               ) -> tuple[nn.Module, ArchSpec]:
    """Search, then derive the spec at the target (MACs, or `latency.ms` predicted); writes `arch.json` and
    `search.safetensors`."""
    from ..supernet import derive_spec, to_supernet
    from .gate_search import derive_for_latency, derive_for_target, search_stage

    supernet = to_supernet(copy.deepcopy(job.dense).requires_grad_(True)).to(job.rt.device)

    def evaluate() -> dict[str, float]:
        gm = M.cost(job.dims, derive_spec(supernet, job.model_name)).gmacs
        return {**evaluate_top(supernet, job.data, job.rt, job.amp), "gmacs": gm}

    stage = search_stage(supernet, job.teacher, job.cfg, target_macs / 1e9 if target_macs else None,
                         job.data.steps_per_epoch, evaluate, latency=latency)
    run_stage(stage, job.data, job.rt, job.opts, job.ckpt("search"), job.log, job.resume)
    if target_macs is None:
        assert latency is not None and latency.ms is not None
        spec = derive_for_latency(supernet, job.model_name, latency)
        if job.cfg.latency_calibration:  # timed against the dense model on the table's runtime, on rank 0
            from .gate_search import derive_calibrated

            from ..latency.measure import measure_speedup

            if job.rt.is_main:
                spec = derive_calibrated(supernet, job.model_name, latency,
                                         lambda s: measure_speedup(s, latency.lut, latency.batch))
            spec = ArchSpec.from_dict(job.rt.gather(spec.to_dict())[0])
    else:
        spec = derive_for_target(supernet, job.model_name, target_macs)
    if job.rt.is_main:
        from ..supernet.searched import save_search

        save_search(supernet, job.model_name, spec, job.out / SEARCH_WEIGHTS)
        spec.save(job.out / "arch.json")
        got = M.cost(job.dims, spec).gmacs
        if target_macs is None:
            assert latency is not None and latency.ms is not None
            ms = spec.extra["predicted_latency_ms"]
            print(f"search: derived {ms:.4g} ms predicted ({got:.4g} GMACs) for a target of {latency.ms:.4g} ms "
                  f"({100 * (ms / latency.ms - 1):+.2f}%): {' '.join(spec.ops)}", file=sys.stderr)
            cal = spec.extra.get("latency_calibration")
            if cal:
                c = cal["iterations"][cal["chosen"]]
                print(f"search: calibrated: measured {c['measured_speedup']:.4g}x for a target of "
                      f"{cal['target_speedup']:.4g}x ({100 * c['miss']:+.1f}%, {cal.get('timed', len(cal['iterations']))} timed)",
                      file=sys.stderr)
        else:
            print(f"search: derived {got:.4g} GMACs for a target of {target_macs / 1e9:.4g} "
                  f"({100 * (got * 1e9 / target_macs - 1):+.2f}%): {' '.join(spec.ops)}", file=sys.stderr)
    job.rt.barrier()
    return supernet, spec


def run_finetune(job: Job, supernet: nn.Module, spec: ArchSpec) -> dict[str, Any]:
    """Fine-tune the pinned supernet, materialize it into the run folder; the plain network on `val/`."""
    from ..materialization import materialize
    from ..run import save_run
    from .finetuning import finetune_stage, pin

    pin(supernet, spec)
    gmacs = M.cost(job.dims, spec).gmacs

    def evaluate() -> dict[str, float]:
        return {**evaluate_top(supernet, job.data, job.rt, job.amp), "gmacs": gmacs}

    stage = finetune_stage(supernet, job.teacher, job.cfg, job.data.steps_per_epoch, evaluate)
    supernet_eval = run_stage(stage, job.data, job.rt, job.opts, job.ckpt("finetune"), job.log, job.resume)
    plain = materialize(supernet.eval(), spec)
    res = evaluate_top(plain, job.data, job.rt, job.amp)
    cost = M.cost(job.dims, spec)
    res.update({"gmacs": cost.gmacs, "params": cost.params, "supernet_top1": supernet_eval.get("top1")})
    if job.rt.is_main:
        save_run(plain, spec, job.out, source={"stage": "finetune", "config": "config.json"})
        job.log.write({"stage": "materialized", "kind": "eval", "epoch": job.cfg.finetune.epochs,
                       "step": 0, **res})
    job.rt.barrier()
    return res


def search_supernet_for(job: Job, source: str | Path | None) -> nn.Module:
    """A supernet from `source`'s searched weights (a run folder or a .safetensors; its `search_state.json`
    must fit this job), else from the dense model."""
    from ..supernet.searched import searched_supernet

    p = Path(source) if source else None
    weights = p / SEARCH_WEIGHTS if p is not None and p.is_dir() else p
    return searched_supernet(copy.deepcopy(job.dense).requires_grad_(True), job.model_name, weights).to(job.rt.device)


# -- entry points ----------------------------------------------------------------------------------
def compress(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "auto", threads: int = 0,
             progress: bool = True, dense: nn.Module | None = None) -> dict[str, Any]:
    """Search, derive, fine-tune and materialize into `out`; the report (also `out/report.json`; empty on
    ranks other than 0)."""
    t0 = time.perf_counter()
    job = open_job(cfg, out, ("search", "finetune"), resume, device, threads, progress, dense)
    try:
        target, latency = resolve_target(cfg, job.dims), resolve_latency(cfg, job.dims)
        dense_res = dense_eval(job)
        if resume and job.ckpt("finetune").exists() and (job.out / "arch.json").exists():
            spec = load_spec(job.out / "arch.json")  # search is done; the fine-tune checkpoint holds the weights
            supernet = search_supernet_for(job, None)
        else:
            supernet, spec = run_search(job, target, latency)
        comp = run_finetune(job, supernet, spec)
        measured = None
        if latency is not None and job.rt.is_main:  # the materialized network on the table's runtime
            from ..latency.measure import measure_run

            measured = measure_run(job.out, latency.lut, latency.batch,
                                   log=(lambda m: print(m, file=sys.stderr)) if progress else None)
        return _report(job, dense_res, comp, spec, target, time.perf_counter() - t0, latency, measured)
    finally:
        close_runtime(job.rt)


def search(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str = "auto", threads: int = 0,
           progress: bool = True) -> dict[str, Any]:
    """The search stage alone: `out/arch.json` (at the target) and `out/search.safetensors`; the report
    (empty on ranks other than 0)."""
    t0 = time.perf_counter()
    job = open_job(cfg, out, ("search",), resume, device, threads, progress)
    try:
        target, latency = resolve_target(cfg, job.dims), resolve_latency(cfg, job.dims)
        dense_res = dense_eval(job)
        _, spec = run_search(job, target, latency)
        return _report(job, dense_res, None, spec, target, time.perf_counter() - t0, latency)
    finally:
        close_runtime(job.rt)


def finetune(cfg: TrainConfig, out: str | Path, *, arch: str | Path | None = None,
             supernet: str | Path | None = None, resume: bool = False, device: str = "auto", threads: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """The fine-tune stage alone, into `out`. The spec: `arch`, else `out/arch.json` (from `search`);
    the starting weights: `supernet` (a search run folder or .safetensors), else `out/search.safetensors`
    when present, else the dense model (uniform head mixing, fresh BatchNorm)."""
    t0 = time.perf_counter()
    out = Path(out)
    spec_ref = arch or (out / "arch.json")
    if not arch and not Path(spec_ref).exists():
        raise SpvitError(f"no architecture: '{out}' has no arch.json; give --arch SPEC or run 'spvit-deploy search' "
                         "into this folder first")
    spec = resolve_spec(spec_ref, cfg.model)
    if supernet is not None:  # a bad or foreign search state stops before anything is written
        from ..supernet.searched import read_search_state

        src = Path(supernet)
        state = read_search_state(src if src.is_dir() else src.parent)
        mine = state is not None and (src.is_dir() or state.weights == src.name)  # as searched_supernet reads it
        if mine and state.model != resolve_model_name(cfg.model):
            raise SpvitError(f"'{supernet}' was searched for {state.model}, not {resolve_model_name(cfg.model)}; "
                             "give the search's --model or another --supernet")
    job = open_job(cfg, out, ("finetune",), resume, device, threads, progress)
    try:
        spec = spec.with_overrides(img_size=int(job.dense.patch_embed.img_size[0]), num_classes=job.dims.num_classes)
        if supernet is None and (out / SEARCH_WEIGHTS).exists():
            supernet = out
        net = search_supernet_for(job, supernet)
        dense_res = dense_eval(job)
        comp = run_finetune(job, net, spec)
        return _report(job, dense_res, comp, spec, None, time.perf_counter() - t0)
    finally:
        close_runtime(job.rt)


def _report(job: Job, dense: dict[str, Any], comp: dict[str, Any] | None, spec: ArchSpec, target: float | None,
            seconds: float, latency: LatencyTarget | None = None, measured: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    from .report import latency_section, write_report

    rep: dict[str, Any] = {}
    if job.rt.is_main:
        lat = latency_section(latency, spec, measured) if latency is not None else None
        rep = write_report(job.out, job.cfg, job.dims, dense, comp, spec, target, seconds, world=job.rt.world,
                           latency=lat)
    job.rt.barrier()
    return rep
