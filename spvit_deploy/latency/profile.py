"""`profile_latency`: measure the latency table on the deployment runtime, through the export path users deploy.

Whole networks are measured, not isolated layers, so every fusion, layout change and runtime overhead
of the real graph is in the numbers: the base network (every block skipped, every FFN pruned), then per
group of same-geometry blocks one network per attention op (the group's blocks all use it) and one per
FFN width (the group's FFNs all at it), plus the dense network. Each is materialized from one supernet
with random weights (latency does not depend on their values), exported by `export_onnx` (or pickled
for torch), and timed by the benchmark's workers, interleaved, in chunks that each also time the base and
the dense network (the machine's speed drifting between chunks is divided out against the dense one); a
block's share is the difference to the base network divided by the group's block count.
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import SpvitError
from ..spec import ArchSpec, BlockSpec
from .table import ATTN_OPS, BatchTable, BlockGroup, GroupLatency, LatencyTable, here_fingerprint

CHECK_NETWORKS = 4  # random mixed architectures timed beside the table's networks (the sums are fitted to them)
WIDTH_STEPS = 8  # FFN widths profiled per group: 0 and eight steps up to the dense width
WIDTH_MULTIPLE = 16  # profiled widths are multiples of 16 (the widths GEMM kernels favour)
MAX_WORKERS = 14  # networks timed side by side (each in its own worker process)
SESSIONS = 5  # independent timing sessions per chunk (median), the iterations split between them
SMALL_BATCH, SMALL_BATCH_FACTOR = 8, 3  # below this batch, 3x the iterations and rounds (short runs, more noise)


def batch_settings(settings: Any, batch: int) -> Any:
    """`settings` for timing at `batch`: small batches run 3x the iterations in 3x the interleaved rounds, so
    that a burst of noise on the machine hits fewer of a network's samples (their runs are short)."""
    from dataclasses import replace

    if batch >= SMALL_BATCH:
        return settings
    return replace(settings, iters=settings.iters * SMALL_BATCH_FACTOR, rounds=settings.rounds * SMALL_BATCH_FACTOR)


def chunks(labels: Sequence[str], size: int) -> list[list[str]]:
    """`labels` in as few chunks of at most `size` as possible, of (nearly) equal length."""
    n = max(1, -(-len(labels) // size))
    per = -(-len(labels) // n)
    return [list(labels[i:i + per]) for i in range(0, len(labels), per)]


def width_grid(dense: int, steps: int = WIDTH_STEPS, multiple: int = WIDTH_MULTIPLE) -> tuple[int, ...]:
    """0, then `steps` widths up to `dense`, rounded to `multiple` (the dense width itself last)."""
    if steps < 1:
        raise SpvitError(f"--width-steps must be >= 1, got {steps}")
    ws = {0, dense}
    for k in range(1, steps):
        w = round(dense * k / steps / multiple) * multiple
        if 0 < w < dense:
            ws.add(w)
    return tuple(sorted(ws))


def block_groups(dims: Any, steps: int = WIDTH_STEPS) -> tuple[BlockGroup, ...]:
    """Blocks grouped by geometry (a ViT: one group; Swin: one per stage), in order of first block."""
    from dataclasses import asdict

    groups: dict[Any, list[int]] = {}
    for i, g in enumerate(dims.blocks):
        groups.setdefault(g, []).append(i)
    out = []
    for g, blocks in groups.items():
        geom = asdict(g) | {"grid": list(g.grid)}
        out.append(BlockGroup(blocks=tuple(blocks), geom=geom, widths=width_grid(g.dense_width, steps)))
    return tuple(out)


def profile_configs(groups: Sequence[BlockGroup], depth: int, checks: int | None = None, seed: int = 0
                    ) -> list[tuple[str, list[tuple[str, int]]]]:
    """(label, per block (op, ffn width)) of every network to time: base, per group each op and each width > 0,
    and `checks` random mixed architectures (`check<k>`) the per-block sums are fitted to (`delta_scale`)."""
    import random

    base = [("skip", 0)] * depth
    out = [("base", base)]
    for gi, g in enumerate(groups):
        for op in ATTN_OPS:
            out.append((f"g{gi}:{op}", [(op, 0) if i in g.blocks else base[i] for i in range(depth)]))
        for w in g.widths[1:]:
            out.append((f"g{gi}:ffn{w}", [("skip", w) if i in g.blocks else base[i] for i in range(depth)]))
    checks = CHECK_NETWORKS if checks is None else checks
    rng = random.Random(seed + 7919)
    gi = {b: k for k, g in enumerate(groups) for b in g.blocks}
    for k in range(checks):
        out.append((f"check{k}", [(rng.choice((*ATTN_OPS, "skip")), rng.randint(0, groups[gi[i]].widths[-1]))
                                  for i in range(depth)]))
    return out


def delta_scale(groups: Sequence[BlockGroup], gl: Sequence[GroupLatency], rows: dict[str, dict[str, Any]],
                nets: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    """The factor the per-block latencies are scaled by so that their sums match whole mixed networks: the
    check networks and the dense one, each measured against the base network timed in its own chunk (drift
    cancels), fitted in relative error. The whole networks expose what the single-kind networks the table is
    made of do not (interactions between a block's attention and FFN, cache effects of mixed widths)."""
    from .predict import ffn_curve

    gi = {b: k for k, g in enumerate(groups) for b in g.blocks}
    curves = [ffn_curve(g.widths, x.ffn_ms) for g, x in zip(groups, gl)]
    ratios, used = [], []
    for label, blocks in nets.items():
        if label not in rows or "base_p50_ms" not in rows[label]:
            continue
        pred = sum((gl[gi[i]].attn_ms[op] if op != "skip" else 0.0) + float(curves[gi[i]][w])
                   for i, (op, w) in enumerate(blocks))
        meas = rows[label]["p50_ms"] - rows[label]["base_p50_ms"]
        if pred > 0 and meas > 0:
            ratios.append(pred / meas)
            used.append({"label": label, "sum_of_blocks_ms": round(pred, 4), "measured_ms": round(meas, 4)})
    if not ratios:
        return {"delta_scale": 1.0, "fitted_on": []}
    k = sum(ratios) / sum(r * r for r in ratios)  # argmin sum (k * pred / meas - 1)^2
    return {"delta_scale": round(k, 6), "fitted_on": used}


def _spec(model: str, dims: Any, img_size: int, blocks: list[tuple[str, int]], family: str,
          conv_scope: str) -> ArchSpec:
    return ArchSpec(model=model, img_size=img_size, num_classes=dims.num_classes, source="profile-latency",
                    blocks=tuple(BlockSpec(attn=op, ffn_kept=tuple(range(w))) for op, w in blocks),
                    family=family, conv_scope=conv_scope)


def check_backend(backend: str, fp16: bool) -> str:
    """The precision profiled on `backend`; one-line errors for an unknown backend, a backend that
    cannot run here (TensorRT without a GPU: nothing is measured) or a precision it does not run."""
    from ..bench.backends import backend_status, parse_backends

    parse_backends([backend])
    if backend == "tensorrt" and not fp16:
        raise SpvitError("the tensorrt backend profiles fp16 engines: pass --fp16")
    if backend != "tensorrt" and fp16:
        raise SpvitError(f"--fp16 is for --backend tensorrt; {backend} runs the fp32 graph")
    reason = backend_status(backend)
    if reason:
        raise SpvitError(f"cannot profile on {backend} here, nothing was measured: {reason}")
    return "fp16" if fp16 else "fp32"


def profile_latency(
    model: str,
    out: str | os.PathLike[str],
    *,
    backend: str = "onnxruntime",
    batches: Sequence[int] = (1,),
    fp16: bool = False,
    threads: int | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
    width_steps: int = WIDTH_STEPS,
    iters: int = 20,
    warmup: int = 3,
    rounds: int = 4,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Profile `model` on `backend` at each batch size and write the table to `out` (atomically)."""
    from .._io import check_writable
    from ..host import busiest_processes, load_average
    from ..bench.settings import BenchSettings
    from ..models import dims_for, resolve_model_name

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if Path(out).is_dir():
        raise SpvitError(f"--out '{out}' is a folder; give a file name such as lut.json")
    check_writable(out, what="--out")
    precision = check_backend(backend, fp16)
    settings = BenchSettings(backends=(backend,), batches=tuple(batches), threads=threads, iters=iters,
                             warmup=warmup, rounds=rounds, seed=seed)
    name = resolve_model_name(model)
    dims = dims_for(name, num_classes=num_classes, img_size=img_size)
    groups = block_groups(dims, width_steps)
    configs = profile_configs(groups, dims.depth, seed=seed)
    fit_nets = {label: blocks for label, blocks in configs if label.startswith("check")}
    gi_ = {b: k for k, g in enumerate(groups) for b in g.blocks}
    fit_nets["dense"] = [("msa", groups[gi_[i]].widths[-1]) for i in range(dims.depth)]
    t0 = time.perf_counter()
    env = {**here_fingerprint(backend, settings.resolved_threads, precision),
           "load_average_before": load_average(), "busiest_processes_before": busiest_processes()}
    with tempfile.TemporaryDirectory(prefix="spvit-lut-") as tmp:
        paths = build_graphs(name, dims, configs, backend, Path(tmp), seed, say)
        tables = {}
        for batch in settings.batches:
            bs = batch_settings(settings, batch)
            say(f"timing batch {batch}: {len(paths)} networks, {bs.iters} iterations each")
            rows = time_chunked(backend, paths, batch, (dims.in_chans, dims.img_size, dims.img_size), bs)
            tables[batch] = batch_table(batch, groups, rows, fit_nets)
            t = tables[batch]
            say(f"batch {batch}: fixed {t.fixed_ms:.3f} ms, dense {t.dense_ms:.3f} ms "
                f"({time.perf_counter() - t0:.0f} s so far)")
    from datetime import datetime, timezone

    env |= {"date_utc": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "load_average_after": load_average(), "seconds": round(time.perf_counter() - t0, 1)}
    lut = LatencyTable(model=name, family=dims.family, img_size=dims.img_size, num_classes=dims.num_classes,
                       backend=backend, precision=precision, threads=settings.resolved_threads, environment=env,
                       export={"opset": settings.opset, "pad_widths": None, "weights": "random"},
                       timing={"warmup": warmup, "iters": iters, "rounds": rounds, "statistic": "p50",
                               "small_batch": SMALL_BATCH, "small_batch_factor": SMALL_BATCH_FACTOR,
                               "sessions": SESSIONS, "width_steps": width_steps, "width_multiple": WIDTH_MULTIPLE,
                               "check_networks": sum(k.startswith("check") for k, _ in configs)},
                       groups=groups, batches=tables)
    LatencyTable.from_dict(lut.to_dict())  # what is written must load
    lut.save(out)
    say(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return lut


def build_graphs(name: str, dims: Any, configs: list[tuple[str, list[tuple[str, int]]]], backend: str, tmp: Path,
                 seed: int, say: Callable[[str], None], dense: bool = True, prefix: str = "") -> dict[str, str]:
    """Export (or pickle) every profiled network and (`dense`) the dense one into `tmp`, file names starting with
    `prefix`: {label: path}."""
    import torch

    from ..bench.backends import BACKENDS
    from ..export.onnx import export_onnx
    from ..families import family_of
    from ..materialization import materialize
    from ..model_source import dense_spec, randomize_constants
    from ..models import create_dense
    from ..supernet import to_supernet

    torch.manual_seed(seed)
    dense_net = randomize_constants(create_dense(name, num_classes=dims.num_classes, img_size=dims.img_size),
                                    seed).eval()
    fam = family_of(dense_net, name)
    supernet = to_supernet(copy.deepcopy(dense_net)).eval()
    kind = BACKENDS[backend].artifact
    nets = [(label, _spec(name, dims, dims.img_size, blocks, fam.name, fam.conv_scope)) for label, blocks in configs]
    if dense:
        nets.append(("dense", dense_spec(dense_net, name)))
    paths = {}
    for k, (label, spec) in enumerate(nets, 1):
        t = time.perf_counter()
        module = dense_net if label == "dense" else materialize(supernet, spec)
        path = tmp / f"{prefix}{label.replace(':', '_')}.{kind if kind == 'onnx' else 'pt'}"
        if kind == "onnx":
            export_onnx(module, path, spec=spec, variant="dense" if label == "dense" else "compressed",
                        check_batches=(1,), seed=seed)
        else:
            torch.save(module.float().cpu().eval(), str(path))
        paths[label] = str(path)
        say(f"[{k}/{len(nets)}] {label}: {'exported' if kind == 'onnx' else 'saved'} in {time.perf_counter() - t:.1f} s")
    return paths


def time_sessions(backend: str, paths: dict[str, str], batch: int, input_shape: Sequence[int], settings: Any,
                  reference: str, sessions: int | None = None) -> dict[str, dict[str, Any]]:
    """Time the networks of `paths` (one chunk, `reference` among them) interleaved in `sessions` independent
    sessions (fresh worker processes), the iterations and rounds of `settings` split between them. Per network:
    the first session's row, `p50_ms` the median over the sessions, `ratio` the median over the sessions of its
    p50 / the reference's p50 in the same session (drift within the chunk cancels; a session in which one
    process lands badly, which a shared VM does now and then, is outvoted), and `sessions_p50_ms`."""
    import statistics
    from dataclasses import replace

    from ..bench.harness import time_interleaved

    sessions = sessions or SESSIONS
    per = replace(settings, iters=max(1, -(-settings.iters // sessions)), rounds=max(1, -(-settings.rounds // sessions)))
    runs = [time_interleaved(backend, paths, batch, input_shape, per)[0] for _ in range(sessions)]
    out = {}
    for k in paths:
        p50s = [r[k]["p50_ms"] for r in runs]
        out[k] = {**{key: v for key, v in runs[0][k].items() if key != "times_ms"},
                  "p50_ms": statistics.median(p50s), "p90_ms": statistics.median(r[k]["p90_ms"] for r in runs),
                  "iters": sum(r[k]["iters"] for r in runs), "sessions_p50_ms": [round(v, 4) for v in p50s],
                  "other_cpu_pct": max(r[k].get("other_cpu_pct") or 0.0 for r in runs),
                  "ratio": statistics.median(r[k]["p50_ms"] / r[reference]["p50_ms"] for r in runs)}
    return out


def time_chunked(backend: str, paths: dict[str, str], batch: int, input_shape: Sequence[int],
                 settings: Any, reference: str = "dense", sessions: int | None = None) -> dict[str, dict[str, Any]]:
    """Time every network at `batch`, at most `MAX_WORKERS` side by side, each chunk in `sessions` sessions
    (`time_sessions`). The base network and `reference` (the dense one) are in every chunk; a network's latency
    is its median ratio to the reference times the reference's mean p50 over the chunks, so the machine's speed
    drifting between chunks and sessions, which is multiplicative (a shared VM runs everything 10-30% slower
    for tens of seconds at a time), cancels. Each row keeps its unscaled `raw_p50_ms` (median over the
    sessions), `drift_scale` (latency / raw), and `base_p50_ms`, its chunk's base network (scaled)."""
    import statistics

    fixed = ["base", reference]
    rest = [k for k in paths if k not in fixed]
    timed_chunks = [time_sessions(backend, {k: paths[k] for k in [*fixed, *part]}, batch, input_shape, settings,
                                  reference, sessions)
                    for part in (chunks(rest, MAX_WORKERS - len(fixed)) if rest else [[]])]
    refs = [t[reference]["p50_ms"] for t in timed_chunks]
    ref_ms = statistics.mean(refs)
    rows: dict[str, dict[str, Any]] = {}
    bases = []
    for t in timed_chunks:
        base = t["base"]["ratio"] * ref_ms
        bases.append(base)
        for k, r in t.items():
            if k not in fixed:
                ms = r["ratio"] * ref_ms
                rows[k] = {**r, "p50_ms": ms, "p90_ms": r["p90_ms"] * ms / r["p50_ms"], "raw_p50_ms": r["p50_ms"],
                           "drift_scale": round(ms / r["p50_ms"], 6), "base_p50_ms": base}
    rows["base"] = {"p50_ms": sum(bases) / len(bases), "chunks": bases}
    first = timed_chunks[0][reference]
    rows[reference] = {**first, "p50_ms": ref_ms, "p90_ms": first["p90_ms"] * ref_ms / first["p50_ms"],
                       "raw_p50_ms": ref_ms, "drift_scale": 1.0, "base_p50_ms": rows["base"]["p50_ms"], "chunks": refs}
    return rows


def batch_table(batch: int, groups: Sequence[BlockGroup], rows: dict[str, dict[str, Any]],
                nets: dict[str, list[tuple[str, int]]] | None = None) -> BatchTable:
    """Per-block ms from the timed whole networks (difference to the chunk's base / blocks in the group), scaled
    by `delta_scale` fitted to the check networks and the dense one (`nets`: label -> blocks; None: unscaled)."""
    def per_block(label: str, n: int) -> float:
        r = rows[label]
        return (r["p50_ms"] - r["base_p50_ms"]) / n

    gl = []
    for gi, g in enumerate(groups):
        n = len(g.blocks)
        gl.append(GroupLatency(attn_ms={op: per_block(f"g{gi}:{op}", n) for op in ATTN_OPS},
                               ffn_ms=(0.0, *(per_block(f"g{gi}:ffn{w}", n) for w in g.widths[1:]))))
    correction = None
    if nets:
        correction = delta_scale(groups, gl, rows, nets)
        k = correction["delta_scale"]
        gl = [GroupLatency(attn_ms={op: v * k for op, v in x.attn_ms.items()}, ffn_ms=tuple(v * k for v in x.ffn_ms))
              for x in gl]
    configs = tuple({"label": k, "p50_ms": round(r["p50_ms"], 4),
                     **({"base_p50_ms": round(r["base_p50_ms"], 4), "p90_ms": round(r["p90_ms"], 4),
                         "iters": r["iters"], "other_cpu_pct": r["other_cpu_pct"]} if k != "base" else {}),
                     **({"raw_p50_ms": round(r["raw_p50_ms"], 4), "drift_scale": r["drift_scale"]}
                        if "drift_scale" in r else {})}
                    for k, r in rows.items())
    return BatchTable(batch=batch, fixed_ms=rows["base"]["p50_ms"], dense_ms=rows["dense"]["p50_ms"],
                      groups=tuple(gl), configs=configs, correction=correction)
