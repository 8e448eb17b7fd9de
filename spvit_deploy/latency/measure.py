"""Measured latency of architectures on a latency table's runtime, the way the table was measured
(same export, threads, workers and statistic): `measure_specs` for many specs of one model (the
predictor's accuracy benchmark), `measure_run` for a compress run folder against its dense model, `measure_speedup` for one candidate
against the dense model (the calibration of a latency-targeted derivation).
"""
from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from ..spec import ArchSpec
from .table import LatencyTable, check_here


def measure_specs(specs: dict[str, ArchSpec], lut: LatencyTable, batches: Sequence[int] | None = None, *,
                  iters: int = 20, warmup: int = 3, rounds: int = 4, seed: int = 0,
                  log: Callable[[str], None] | None = None, reference: str | None = None
                  ) -> dict[str, dict[int, dict[str, Any]]]:
    """{label: {batch: timing row (p50_ms, ...)}} of every spec (all of `lut.model`), on the table's backend
    with its threads, exported as the table's networks were. With `reference` (a label of `specs`), that
    network is timed in every chunk too and each row gets `ref_p50_ms`, its p50 in the row's own chunk (the
    machine's speed at the time, to normalise drift between chunks and runs)."""
    import torch

    from ..bench.settings import BenchSettings
    from ..export.onnx import export_onnx
    from ..materialization import materialize
    from ..model_source import randomize_constants
    from ..models import create_dense
    from ..supernet import to_supernet
    from .predict import check_spec_fits
    from .profile import MAX_WORKERS, batch_settings, chunks

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    check_here(lut)
    for s in specs.values():
        check_spec_fits(s, lut)
    batches = tuple(batches or lut.batches)
    settings = BenchSettings(backends=(lut.backend,), batches=batches, threads=lut.threads, iters=iters,
                             warmup=warmup, rounds=rounds, seed=seed)
    torch.manual_seed(seed)
    dense = randomize_constants(create_dense(lut.model, num_classes=lut.num_classes, img_size=lut.img_size), seed)
    supernet = to_supernet(copy.deepcopy(dense.eval())).eval()
    out: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in specs}
    with tempfile.TemporaryDirectory(prefix="spvit-latmeasure-") as tmp:
        paths = {}
        for k, (label, spec) in enumerate(specs.items(), 1):
            path = Path(tmp) / f"{k}.onnx"
            spec = spec.with_overrides(num_classes=lut.num_classes)
            if lut.backend in ("torch", "torch-cuda"):
                path = path.with_suffix(".pt")
                torch.save(materialize(supernet, spec).float().cpu().eval(), str(path))
            else:
                export_onnx(materialize(supernet, spec), path, spec=spec, check_batches=(1,), seed=seed)
            paths[label] = str(path)
            say(f"[{k}/{len(specs)}] {label}: exported")
        from ..bench.harness import time_interleaved

        labels = [k for k in paths if k != reference]
        shape = (3, lut.img_size, lut.img_size)
        for batch in batches:
            refs = []
            for chunk in chunks(labels, MAX_WORKERS - (reference is not None)):
                chunk = [reference, *chunk] if reference is not None else chunk
                say(f"timing batch {batch}: {chunk[0]} .. {chunk[-1]}")
                rows, _ = time_interleaved(lut.backend, {k: paths[k] for k in chunk}, batch, shape,
                                           batch_settings(settings, batch))
                for k in chunk:
                    row = {key: rows[k][key] for key in ("p50_ms", "p90_ms", "mean_ms", "min_ms", "iters",
                                                         "other_cpu_pct")}
                    if reference is not None:
                        row["ref_p50_ms"] = rows[reference]["p50_ms"]
                    if k != reference:
                        out[k][batch] = row
                if reference is not None:
                    refs.append(rows[reference])
            if reference is not None:
                out[reference][batch] = {key: refs[0][key] for key in ("p50_ms", "p90_ms", "mean_ms", "min_ms",
                                                                       "iters", "other_cpu_pct")}
                out[reference][batch]["ref_p50_ms"] = refs[0]["p50_ms"]
                out[reference][batch]["chunks_p50_ms"] = [r["p50_ms"] for r in refs]
    return out


def measure_run(run: str | Path, lut: LatencyTable, batch: int, *, iters: int = 60, warmup: int = 3,
                rounds: int = 20, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The run's materialized network against its dense model on the table's runtime at `batch`,
    interleaved (`spvit_deploy.bench` with the table's backend and threads): p50 ms of each; the speedup is
    the median over the interleaved rounds of each round's dense / compressed ratio (drift between rounds
    cancels; `latency.calibrate.paired_speedup`), `p50_speedup` the ratio of the p50s."""
    from ..bench.harness import measure_model
    from ..bench.settings import BenchSettings

    check_here(lut)
    settings = BenchSettings(backends=(lut.backend,), batches=(batch,), threads=lut.threads, iters=iters,
                             warmup=warmup, rounds=rounds)
    section = measure_model(settings, run=run, log=log)
    rows = {r["variant"]: r for r in section["rows"] if r["batch"] == batch and r["backend"] == lut.backend}
    from .calibrate import paired_speedup

    d, c = rows["dense"]["p50_ms"], rows["compressed"]["p50_ms"]
    paired = paired_speedup(rows["dense"]["times_ms"], rows["compressed"]["times_ms"], settings.block)
    return {"backend": lut.backend, "batch": batch, "threads": lut.threads, "iters": iters, "rounds": rounds,
            "dense_ms": round(d, 4), "compressed_ms": round(c, 4), "speedup": round(paired, 4),
            "p50_speedup": round(d / c, 4),
            "other_cpu_pct": rows["compressed"].get("other_cpu_pct")}


def measure_speedup(spec: ArchSpec, lut: LatencyTable, batch: int, *, iters: int = 60, rounds: int = 20,
                    seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, float]:
    """`spec` (materialized) and the dense model (timm's, as `measure_run` and the table time it), random weights,
    exported as the table's networks were and timed interleaved in one process on the table's runtime at
    `batch`: {dense_ms, ms (p50 of each), speedup (`paired_speedup`)}."""
    from ..bench.harness import time_interleaved
    from ..bench.settings import BenchSettings
    from ..models import dims_for
    from .calibrate import paired_speedup
    from .profile import build_graphs

    check_here(lut)
    dims = dims_for(lut.model, num_classes=lut.num_classes, img_size=lut.img_size)
    blocks = [(b.attn, b.ffn_width) for b in spec.blocks]
    settings = BenchSettings(backends=(lut.backend,), batches=(batch,), threads=lut.threads, iters=iters,
                             warmup=3, rounds=rounds, seed=seed)
    with tempfile.TemporaryDirectory(prefix="spvit-calibrate-") as tmp:
        paths = build_graphs(lut.model, dims, [("candidate", blocks)], lut.backend, Path(tmp), seed,
                             log or (lambda m: None))
        rows, _ = time_interleaved(lut.backend, paths, batch, (dims.in_chans, dims.img_size, dims.img_size), settings)
    d, c = rows["dense"]["p50_ms"], rows["candidate"]["p50_ms"]
    return {"dense_ms": round(d, 4), "ms": round(c, 4),
            "speedup": round(paired_speedup(rows["dense"]["times_ms"], rows["candidate"]["times_ms"], settings.block), 4),
            "other_cpu_pct": rows["candidate"].get("other_cpu_pct")}
