"""Dense vs compressed latency, throughput and memory, per backend and batch size.

For each (backend, batch) both models run in worker processes of their own, are warmed up, then
timed in alternating blocks of iterations (dense, compressed, compressed, dense, ...) so that
machine noise hits both alike. Reported: p50/p90/p99/mean latency, throughput (batch / mean
latency) and the worker's peak RSS (Python + runtime + model + activations), with the RSS
before the model was loaded beside it.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..comparison import compare
from ..errors import SpvitError
from .backends import BACKENDS, backend_status
from .settings import VARIANTS, BenchSettings, settings_dict

# ------------------------------------------------------------------------------ workers


class Worker:
    """A `spvit_deploy.bench.worker` process holding one model on one backend."""

    def __init__(self, backend: str, path: str, threads: int, batch: int, input_shape: Sequence[int],
                 seed: int, wait: bool = True) -> None:
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["OMP_NUM_THREADS"] = str(threads)
        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a chatty worker never blocks
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spvit_deploy.bench.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True, env=env,
        )
        cfg = {"backend": backend, "path": path, "threads": threads, "batch": batch,
               "input_shape": list(input_shape), "seed": seed}
        self.loaded: dict[str, Any] = {}
        self._send(cfg)
        if wait:
            self.wait_loaded()

    def wait_loaded(self) -> None:
        """Wait for the model to be loaded (a worker made with `wait=False` loads while others start)."""
        if not self.loaded:
            try:
                self.loaded = self._reply()
            except BaseException:
                self.close()
                raise

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def _ask(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._send(msg)
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.seek(0)
            err = self.log.read().strip().splitlines()
            raise SpvitError(f"benchmark worker died ({err[-1] if err else 'no message'})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise SpvitError(f"benchmark worker failed: {reply.get('error')}")
        return reply

    def run(self, n: int) -> list[float]:
        return self._ask({"cmd": "run", "n": n})["times_s"] if n else []

    def output(self) -> np.ndarray:
        r = self._ask({"cmd": "output"})
        return np.frombuffer(base64.b64decode(r["data"]), dtype=np.float32).reshape(r["shape"])

    def stats(self) -> dict[str, Any]:
        return self._ask({"cmd": "stats"})

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._ask({"cmd": "exit"})
            except SpvitError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.log):
            if f:
                f.close()


def latency_stats(times_s: Sequence[float], batch: int) -> dict[str, float]:
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(t, 50)),
        "p90_ms": float(np.percentile(t, 90)),
        "p99_ms": float(np.percentile(t, 99)),
        "mean_ms": float(t.mean()),
        "min_ms": float(t.min()),
        "throughput_ips": float(batch * 1e3 / t.mean()),
    }


def time_interleaved(backend: str, paths: dict[str, str], batch: int, input_shape: Sequence[int],
                     settings: BenchSettings) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Time every model in `paths` ({label: artefact}) on one backend at one batch size, interleaved."""
    from ..host import cpu_ticks, other_cpu_percent

    threads = settings.resolved_threads
    workers: dict[str, Worker] = {}
    try:
        for v, p in paths.items():  # start every worker, then wait for each to load (loading is not timed)
            workers[v] = Worker(backend, p, threads, batch, input_shape, settings.seed, wait=False)
        for w in workers.values():
            w.wait_loaded()
        outputs = {v: w.output() for v, w in workers.items()}
        for w in workers.values():
            w.run(settings.warmup)
        times: dict[str, list[float]] = {v: [] for v in workers}
        order = list(workers)
        ticks, t0 = cpu_ticks(), time.monotonic()
        for r in range(settings.rounds):
            for v in (order if r % 2 == 0 else order[::-1]):
                n = min(settings.block, settings.iters - len(times[v]))
                times[v] += workers[v].run(n)
        ours = {os.getpid(), *(w.proc.pid for w in workers.values())}
        other_cpu = other_cpu_percent(ticks, cpu_ticks(), time.monotonic() - t0, ours)
        rows = {}
        for v, w in workers.items():
            st = w.stats()
            rows[v] = {
                **latency_stats(times[v], batch),
                "iters": len(times[v]),
                "load_s": w.loaded["load_s"],
                "peak_rss_mib": st["peak_rss_mib"],
                "rss_before_load_mib": w.loaded["rss_before_mib"],
                "other_cpu_pct": other_cpu,  # CPU other processes used while timing, % of one CPU
                "times_ms": [round(t * 1e3, 3) for t in times[v]],
            }
        return rows, outputs
    finally:
        for w in workers.values():
            w.close()


# ------------------------------------------------------------------------------ artefacts


def _save_torch(module: Any, path: Path) -> None:
    import torch

    torch.save(module, str(path))


def prepare_artifacts(pair: dict[str, Any], kinds: set[str], workdir: Path, settings: BenchSettings
                      ) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """Export each variant once per artefact kind the backends need: {kind: {variant: path}}, export info."""
    from ..export.onnx import export_onnx

    paths: dict[str, dict[str, str]] = {k: {} for k in kinds}
    info: dict[str, Any] = {}
    for v, em in pair.items():
        if "onnx" in kinds:
            p = workdir / f"{v}.onnx"
            pad = settings.pad_widths if v == "compressed" else None
            rep = export_onnx(em.module, p, spec=em.spec, variant=v, opset=settings.opset, pad_widths=pad,
                              seed=settings.seed)
            paths["onnx"][v] = str(p)
            info[v] = {"parity_max_abs_diff": rep.max_abs_diff, "op_counts": rep.op_counts,
                       "size_mib": round(rep.size_bytes / 2**20, 2), "pad_widths": pad}
        if "torch" in kinds:
            p = workdir / f"{v}.pt"
            _save_torch(em.module.float().cpu().eval(), p)  # the module as it is, not the export rewrite
            paths["torch"][v] = str(p)
    return paths, info


# ------------------------------------------------------------------------------ API


def measure_model(
    settings: BenchSettings,
    *,
    run: str | os.PathLike[str] | None = None,
    model: str | None = None,
    arch: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    workdir: str | os.PathLike[str] | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Benchmark one model pair (dense vs compressed) on every backend and batch in `settings`."""
    from ..export.source import load_model_pair
    from ..macs import cost
    from ..models import model_dims
    from ..host import busiest_processes, load_average

    say = log or (lambda msg: None)
    status = {b: backend_status(b) for b in settings.backends}
    usable = [b for b in settings.backends if status[b] is None]
    pair = load_model_pair(run=run, model=model, arch=arch, checkpoint=checkpoint, img_size=img_size,
                           num_classes=num_classes, seed=settings.seed)
    spec = pair["compressed"].spec
    dims = model_dims(pair["dense"].module)
    dense_cost, comp_cost = cost(dims), cost(dims, spec)
    section: dict[str, Any] = {
        "model": spec.model,
        "arch": spec.source or (str(arch) if arch is not None else str(run)),
        "run": str(run) if run is not None else None,
        "img_size": spec.img_size,
        "num_classes": spec.num_classes,
        "random_weights": {v: em.random_weights for v, em in pair.items()},
        "gmacs": {"dense": round(dense_cost.gmacs, 4), "compressed": round(comp_cost.gmacs, 4)},
        "params": {"dense": dense_cost.params, "compressed": comp_cost.params},
        "macs_ratio": round(dense_cost.macs / comp_cost.macs, 4),
        "skipped": [{"backend": b, "reason": status[b]} for b in settings.backends if status[b] is not None],
        "rows": [],
        "speedups": [],
        "agreement": [],
        "export": {},
        "profiles": [],
        "load_before": {"load_average": load_average(), "busiest_processes": busiest_processes()},
    }
    input_shape = (dims.in_chans, spec.img_size, spec.img_size)
    with tempfile.TemporaryDirectory(prefix="spvit-bench-", dir=workdir) as tmp:
        kinds = {BACKENDS[b].artifact for b in usable}
        say(f"{spec.model}: exporting {', '.join(sorted(kinds)) or 'nothing'}")
        paths, section["export"] = prepare_artifacts(pair, kinds, Path(tmp), settings)
        del pair
        for batch in settings.batches:
            ref: dict[str, tuple[str, np.ndarray]] = {}
            for b in usable:
                say(f"{spec.model}: {b} batch {batch}")
                rows, outputs = time_interleaved(b, paths[BACKENDS[b].artifact], batch, input_shape, settings)
                for v in VARIANTS:
                    section["rows"].append({"backend": b, "batch": batch, "variant": v, **rows[v]})
                    if v in ref:
                        c = compare(ref[v][1], outputs[v])
                        section["agreement"].append({"batch": batch, "variant": v, "backend": b, "vs": ref[v][0],
                                                     **c.to_dict()})
                    else:
                        ref[v] = (b, outputs[v])
                d, c = rows["dense"], rows["compressed"]
                section["speedups"].append({
                    "model": spec.model, "backend": b, "batch": batch,
                    "p50_speedup": round(d["p50_ms"] / c["p50_ms"], 4),
                    "mean_speedup": round(d["mean_ms"] / c["mean_ms"], 4),
                    "macs_ratio": section["macs_ratio"],
                })
        if settings.profile and "onnxruntime" in usable:
            from .profile import ort_op_profile

            for batch in settings.batches:
                say(f"{spec.model}: profiling batch {batch}")
                section["profiles"].append({"batch": batch, "graphs": {
                    v: ort_op_profile(paths["onnx"][v], batch, input_shape, threads=settings.resolved_threads)
                    for v in VARIANTS}})
    section["load_after"] = {"load_average": load_average()}
    return section


def benchmark(
    out: str | os.PathLike[str],
    *,
    run: str | os.PathLike[str] | None = None,
    model: str | None = None,
    arch: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    settings: BenchSettings | None = None,
    notes: str = "",
    log: Any = None,
) -> dict[str, Any]:
    """Benchmark one model pair and write `results.json`, `report.md` and `latency.png` into `out`."""
    from .._io import check_writable
    from .report import write_report

    settings = settings or BenchSettings()
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpvitError(f"--out '{out_dir}' exists and is not a folder")
    check_writable(out_dir, folder=True, what="--out")  # before the measurements, not after them
    section = measure_model(settings, run=run, model=model, arch=arch, checkpoint=checkpoint, img_size=img_size,
                            num_classes=num_classes, log=log)
    return write_report([section], settings, out_dir, notes=notes)


def compare_graphs(graphs: dict[str, str | os.PathLike[str]], settings: BenchSettings, input_shape: Sequence[int],
                   title: str, backend: str = "onnxruntime") -> dict[str, Any]:
    """Time several ONNX graphs of one model against each other (an ablation), interleaved, per batch size.

    Also records the node counts of the graph ONNX Runtime actually runs after its own fusions.
    """
    from ..export.ort import ort_session

    reason = backend_status(backend)
    if reason:
        raise SpvitError(f"cannot compare graphs on {backend}: {reason}")
    paths = {k: str(v) for k, v in graphs.items()}
    first = next(iter(paths))
    runtime_ops: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="spvit-ortopt-") as tmp:
        for label, p in paths.items():
            opt = Path(tmp) / "optimized.onnx"
            ort_session(p, threads=settings.resolved_threads, optimized_path=opt)
            runtime_ops[label] = _op_counts(opt)
    rows = []
    for batch in settings.batches:
        timed, _ = time_interleaved(backend, paths, batch, input_shape, settings)
        for label, r in timed.items():
            rows.append({"batch": batch, "graph": label, **r,
                         "p50_speedup_vs_first": round(timed[first]["p50_ms"] / r["p50_ms"], 4)})
    return {"title": title, "backend": backend, "settings": settings_dict(settings), "first": first, "rows": rows,
            "runtime_op_counts": runtime_ops}


def _op_counts(path: str | os.PathLike[str]) -> dict[str, int]:
    from ..errors import require

    onnx = require("onnx", "onnx")
    counts: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))
