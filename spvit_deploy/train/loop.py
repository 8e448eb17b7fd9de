"""The shared training loop of every stage (teacher, search, fine-tune).

Data-parallel under `torchrun` (DDP; gloo on CPU, nccl on GPU) with logging, checkpoints and
the progress bar on rank 0 only; AMP (bf16 on CPU, bf16/fp16 on GPU); per-optimizer gradient
clipping; cosine or constant schedules with warmup, a pure function of the global step;
a checkpoint every N steps and at every epoch end; exact resume; a non-finite loss stops
with one line and keeps the last good checkpoint; Ctrl-C stops at the next step boundary
after writing a checkpoint. The process's runtime (group, device, AMP, seeds) is `runtime.py`.
"""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import SpvitError
from .checkpoint import Position, capture_rng, load_into, read_checkpoint, restore_rng, save_checkpoint
from .data import Data
from .runtime import Runtime, close_runtime, resolve_amp, seed_all, setup_runtime  # noqa: F401  (the loop's API)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, float]]"]


class NonFiniteLoss(SpvitError):
    """Training produced a NaN/inf loss or gradient; the last good checkpoint is kept."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: a checkpoint was written at a step boundary; `--resume` continues."""


# -- schedules ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """lr factor at a global step: linear warmup, then cosine to `min_ratio` or constant."""

    kind: str
    total_steps: int
    warmup_steps: int = 0
    min_ratio: float = 0.0

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant" or self.total_steps <= self.warmup_steps:
            return 1.0
        t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(named: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                 no_decay: Callable[[str, nn.Parameter], bool]) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on 1-d params and whatever `no_decay` names."""
    decay = [p for n, p in named if p.ndim > 1 and not no_decay(n, p)]
    other = [p for n, p in named if not (p.ndim > 1 and not no_decay(n, p))]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
    return [dict(g, lr=lr, base_lr=lr) for g in groups if g["params"]]


# -- a stage --------------------------------------------------------------------------------------
@dataclass
class Stage:
    """What the loop trains: the module, its optimizers and schedules, the loss, the evaluation."""

    name: str
    model: nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    schedules: dict[str, Schedule]
    loss_fn: LossFn  # (the model to call (DDP-wrapped or not), images, targets) -> (loss, logged parts)
    evaluate: Callable[[], dict[str, float]]  # on every rank, the model in eval mode
    epochs: int
    step_info: Callable[[], dict[str, float]] = field(default=lambda: {})  # e.g. the current GMACs


@dataclass(frozen=True)
class LoopOptions:
    seed: int = 0
    amp: torch.dtype | None = None
    clip_grad: float = 0.0
    checkpoint_every: int = 200
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    progress: bool = True


class MetricsLog:
    """`metrics.jsonl`: one JSON row per step and per evaluation, written by rank 0 only."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.lines = 0
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
        if enabled and path.exists():
            self.lines = len(path.read_text().splitlines())

    def truncate(self, lines: int) -> None:
        """Forget rows written after a checkpoint (they will be written again)."""
        if not self.enabled:
            return
        rows = self.path.read_text().splitlines()[:lines] if self.path.exists() else []
        self.path.write_text("".join(r + "\n" for r in rows))
        self.lines = len(rows)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.lines += 1


class StopFlag:
    """First Ctrl-C: stop at the next step boundary (after a checkpoint); second: stop at once."""

    def __init__(self, announce: bool) -> None:
        self.requested, self.announce, self._prev = False, announce, None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nstopping after this step to write a checkpoint (Ctrl-C again to stop at once)", file=sys.stderr)

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)


@torch.no_grad()
def evaluate_top(model: nn.Module, data: Data, rt: Runtime, amp: torch.dtype | None = None) -> dict[str, float]:
    """Top-1 / top-5 (%) on `val/`, each rank on its share, summed over ranks."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = count = 0
    for x, y in data.val_loader():
        x, y = x.to(rt.device), y.to(rt.device)
        with _autocast(rt, amp):
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(dim=-1).sum())
        count += len(y)
    model.train(was_training)
    c1, c5, n = rt.all_sum([correct1, correct5, count])
    return {"top1": 100.0 * c1 / max(n, 1), "top5": 100.0 * c5 / max(n, 1)}


def _autocast(rt: Runtime, amp: torch.dtype | None) -> Any:
    return torch.autocast(rt.device.type, dtype=amp) if amp is not None else nullcontext()


def _progress(stage: Stage, total: int, initial: int, rt: Runtime, enabled: bool) -> Any:
    """A tqdm bar (ETA, loss, GMACs, top-1) on rank 0 in a terminal; logs get one line per epoch."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=stage.name, unit="step", file=sys.stderr, dynamic_ncols=True,
                disable=not (enabled and rt.is_main and sys.stderr.isatty()), mininterval=0.5, leave=True)


def _epoch_line(stage: Stage, epoch: int, ev: dict[str, Any], steps_done: int, steps_total: int, session_steps: int,
                session_seconds: float) -> str:
    eta = session_seconds / max(session_steps, 1) * (steps_total - steps_done)
    metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in ev.items())
    return f"{stage.name} epoch {epoch}/{stage.epochs}: {metrics}  [{session_seconds:.0f}s, ETA {eta:.0f}s]"


def run_stage(stage: Stage, data: Data, rt: Runtime, opts: LoopOptions, ckpt: Path, log: MetricsLog,
              resume: bool) -> dict[str, Any]:
    """Train `stage` to its last epoch (continuing from `ckpt` when `resume`); its final evaluation."""
    model = stage.model
    scaler = torch.amp.GradScaler(rt.device.type, enabled=opts.amp == torch.float16)
    pos = Position()
    if rt.is_main:  # a kill during a checkpoint write leaves its temporary file behind
        for stale in ckpt.parent.glob(f".{ckpt.name}.*.tmp"):
            stale.unlink()
    if resume and ckpt.exists():
        state = read_checkpoint(ckpt, stage.name)
        if state["world"] != rt.world:
            raise SpvitError(f"'{ckpt}' was written by a job of {state['world']} process(es); resume it with the "
                             f"same number (torchrun --nproc-per-node {state['world']})")
        pos = load_into(state, model, stage.optimizers, scaler)
        restore_rng(state["rng"][rt.rank])
        log.truncate(state["metrics_lines"])
        if rt.is_main and not pos.done:
            print(f"{stage.name}: resuming at epoch {pos.epoch + 1} step {pos.step}", file=sys.stderr)
    else:
        seed_all(opts.seed * 1000 + rt.rank)
    if pos.done:
        return pos.extra["eval"]
    spe = data.steps_per_epoch
    ddp: nn.Module = model
    if rt.distributed:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None, find_unused_parameters=True)
    elapsed0, t0, step0 = float(pos.extra.get("elapsed", 0.0)), time.perf_counter(), pos.step

    def save() -> None:
        rt.sync_buffers(model)
        _check_finite_weights(model, stage.name, pos.step, ckpt)  # every rank: they hold the same weights
        rngs = rt.gather(capture_rng())
        if rt.is_main:
            pos.extra["elapsed"] = elapsed0 + time.perf_counter() - t0
            save_checkpoint(ckpt, stage=stage.name, model=model, optimizers=stage.optimizers, scaler=scaler,
                            position=pos, rng=rngs, metrics_lines=log.lines)
        rt.barrier()

    bar = _progress(stage, stage.epochs * spe, pos.step, rt, opts.progress)
    last_eval: dict[str, Any] = dict(pos.extra.get("eval", {}))
    with StopFlag(announce=rt.is_main) as stop:
        if stage.epochs == 0:
            last_eval = stage.evaluate()
        for epoch in range(pos.epoch, stage.epochs):
            model.train()
            if pos.batch < spe:
                for x, y in data.train_loader(epoch, pos.batch):
                    parts, stop_now = _train_step(stage, ddp, x, y, scaler, opts, rt, pos, ckpt, stop)
                    pos.batch += 1
                    pos.step += 1
                    info = stage.step_info()
                    log.write({"stage": stage.name, "kind": "step", "epoch": epoch, "step": pos.step, **parts, **info,
                               "seconds": round(elapsed0 + time.perf_counter() - t0, 3)})
                    bar.update(1)
                    bar.set_postfix(_postfix(parts, info, last_eval), refresh=False)
                    if pos.step % opts.checkpoint_every == 0 or stop_now:
                        save()
                    if stop_now:
                        bar.close()
                        if rt.is_main:
                            print(f"{stage.name}: stopped at step {pos.step}; checkpoint written to {ckpt}; "
                                  "run the same command with --resume to continue", file=sys.stderr)
                        raise Interrupted
            rt.sync_buffers(model)
            last_eval = stage.evaluate()
            row = {"stage": stage.name, "kind": "eval", "epoch": epoch + 1, "step": pos.step, **last_eval}
            log.write(row)
            if rt.is_main and opts.progress:
                bar.write(_epoch_line(stage, epoch + 1, last_eval, pos.step, stage.epochs * spe, pos.step - step0,
                                      time.perf_counter() - t0), file=sys.stderr)
            pos = Position(epoch=epoch + 1, batch=0, step=pos.step, done=epoch + 1 == stage.epochs,
                           extra={**pos.extra, "eval": last_eval})
            save()
    bar.close()
    if stage.epochs == 0:
        pos.done, pos.extra["eval"] = True, last_eval
        save()
    return last_eval


def _train_step(stage: Stage, ddp: nn.Module, x: torch.Tensor, y: torch.Tensor, scaler: Any, opts: LoopOptions,
                rt: Runtime, pos: Position, ckpt: Path, stop: StopFlag) -> tuple[dict[str, float], bool]:
    for name, opt in stage.optimizers.items():
        f = stage.schedules[name].factor(pos.step)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
    x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
    if opts.mixup is not None:
        x, y = opts.mixup(x, y)
    with _autocast(rt, opts.amp):
        loss, parts = stage.loss_fn(ddp, x, y)
    value = float(loss.detach())
    bad, stop_now = rt.all_max([float(not math.isfinite(value)), float(stop.requested)])
    if bad:
        raise NonFiniteLoss(
            f"{stage.name}: non-finite loss ({value}) at epoch {pos.epoch + 1} step {pos.step + 1}; stopped, the last "
            f"good checkpoint is kept{' at ' + str(ckpt) if ckpt.exists() else ''}; start again in a new --out with "
            "lower learning rates (--lr, --gate-lr), a lower --lambda or --amp none"
        )
    for opt in stage.optimizers.values():
        opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    for name, opt in stage.optimizers.items():
        scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if opts.clip_grad > 0 and params:
            norm = float(torch.nn.utils.clip_grad_norm_(params, opts.clip_grad))
            if not math.isfinite(norm) and not scaler.is_enabled():
                raise NonFiniteLoss(
                    f"{stage.name}: non-finite gradient ({name}) at epoch {pos.epoch + 1} step {pos.step + 1}; "
                    "stopped, the last good checkpoint is kept; start again in a new --out with lower learning rates "
                    "or --amp none"
                )
    for opt in stage.optimizers.values():
        scaler.step(opt)
    scaler.update()
    lrs = {f"lr_{k}": o.param_groups[0]["lr"] for k, o in stage.optimizers.items()}
    return {"loss": value, **parts, **lrs}, bool(stop_now)


def _check_finite_weights(model: nn.Module, stage: str, step: int, ckpt: Path) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteLoss(f"{stage}: the weights became non-finite by step {step}; stopped without overwriting "
                            f"{ckpt}; start again in a new --out with lower learning rates")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _postfix(parts: dict[str, float], info: dict[str, float], last_eval: dict[str, Any]) -> dict[str, str]:
    out = {"loss": f"{parts['loss']:.3f}"}
    gmacs = info.get("gmacs", parts.get("gmacs"))
    if gmacs is not None:
        out["GMACs"] = f"{gmacs:.4g}"
    if "top1" in last_eval:
        out["top1"] = f"{last_eval['top1']:.2f}"
    return out
