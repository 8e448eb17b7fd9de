"""The latency lookup table (`lut.json`): what `profile-latency` measured, validated on load, and the
check that it was measured on this machine and runtime.

Per group of blocks with the same geometry (all blocks of a ViT; one stage of Swin) and per batch size:
the latency one block adds with each attention op (msa / conv3x3 / conv1x1; skip adds nothing) and with
its FFN at a grid of hidden widths (0 first), on top of `fixed_ms`, the whole network with every block
skipped and every FFN pruned (patch embedding, norms, residual adds, head). The environment it was
measured in (CPU model and flags, GPUs, library versions, threads, precision) is part of the table.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import SpvitError

LUT_VERSION = 1
LUT_KIND = "spvit-latency-lut"
ATTN_OPS = ("msa", "conv3x3", "conv1x1")  # skip adds no latency of its own (it is in fixed_ms)
BACKEND_LIBS = {"onnxruntime": ("onnxruntime",), "onnxruntime-cuda": ("onnxruntime-gpu", "onnxruntime"),
                "torch": ("torch",), "torch-cuda": ("torch",), "tensorrt": ("tensorrt",)}


@dataclass(frozen=True)
class BlockGroup:
    """Blocks that share one geometry, the FFN widths profiled for them (0 first, the dense width last)."""

    blocks: tuple[int, ...]
    geom: dict[str, Any]  # the `BlockGeom` fields (grid as a list)
    widths: tuple[int, ...]


@dataclass(frozen=True)
class GroupLatency:
    """Per block of one group at one batch size: ms added by each attention op and by the FFN at `widths`."""

    attn_ms: dict[str, float]
    ffn_ms: tuple[float, ...]


@dataclass(frozen=True)
class BatchTable:
    batch: int
    fixed_ms: float  # every block skipped, every FFN pruned
    dense_ms: float  # the dense network, measured beside the rest
    groups: tuple[GroupLatency, ...]
    configs: tuple[dict[str, Any], ...]  # the raw whole-network measurements the table was derived from
    # per-block latencies above are scaled by `delta_scale`, fitted to whole mixed networks timed beside them
    # (`profile.delta_scale`); None in tables profiled before (unscaled)
    correction: dict[str, Any] | None = None


@dataclass(frozen=True)
class LatencyTable:
    model: str  # timm name
    family: str
    img_size: int
    num_classes: int
    backend: str
    precision: str
    threads: int
    environment: dict[str, Any]  # `here_fingerprint` at profiling time, plus date and load
    export: dict[str, Any]  # how the graphs were made (opset, pad_widths)
    timing: dict[str, Any]  # warmup, iters, rounds, statistic
    groups: tuple[BlockGroup, ...]
    batches: dict[int, BatchTable]
    lut_version: int = LUT_VERSION
    kind: str = LUT_KIND

    @property
    def depth(self) -> int:
        return sum(len(g.blocks) for g in self.groups)

    def group_of_block(self) -> list[int]:
        """Index of the group of every block, in block order."""
        out = [-1] * self.depth
        for gi, g in enumerate(self.groups):
            for b in g.blocks:
                out[b] = gi
        return out

    def table(self, batch: int | None = None) -> BatchTable:
        """The table at `batch` (None: the only one, or batch 1 if there are several)."""
        if batch is None:
            batch = next(iter(self.batches)) if len(self.batches) == 1 else 1
        if batch not in self.batches:
            raise SpvitError(f"the latency table has batch sizes {sorted(self.batches)}, not {batch}; profile batch "
                             f"{batch} with 'spvit-deploy profile-latency --batch {batch}' or choose one of those")
        return self.batches[batch]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = {str(b): asdict(t) for b, t in self.batches.items()}
        for t in d["batches"].values():
            if t["correction"] is None:  # a table without the fitted scale reads and writes as before
                del t["correction"]
        return json.loads(json.dumps({"kind": d.pop("kind"), "lut_version": d.pop("lut_version"), **d}))  # tuples -> lists

    def save(self, path: str | os.PathLike[str]) -> None:
        from .._io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, where: str = "latency table") -> "LatencyTable":
        return _parse(d, where)


# -- loading and validation -----------------------------------------------------------------------

def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise SpvitError(f"{where}: {what}; regenerate it with 'spvit-deploy profile-latency'")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse(d: Any, where: str) -> LatencyTable:
    _need(isinstance(d, dict), where, "expected a JSON object")
    _need(d.get("kind") == LUT_KIND, where, f"not a latency table ('kind' is {d.get('kind')!r}, not {LUT_KIND!r})")
    if d.get("lut_version") != LUT_VERSION:
        raise SpvitError(f"{where}: lut_version {d.get('lut_version')!r} is not supported (this spvit-deploy reads "
                         f"{LUT_VERSION}); regenerate it with 'spvit-deploy profile-latency'")
    known = {"kind", "lut_version", "model", "family", "img_size", "num_classes", "backend", "precision", "threads",
             "environment", "export", "timing", "groups", "batches"}
    unknown = sorted(set(d) - known)
    _need(not unknown, where, f"unknown keys {unknown}")
    missing = sorted(known - set(d))
    _need(not missing, where, f"missing keys {missing}")
    for k, typ in (("model", str), ("family", str), ("backend", str), ("precision", str), ("environment", dict),
                   ("export", dict), ("timing", dict), ("groups", list), ("batches", dict)):
        _need(isinstance(d[k], typ), where, f"'{k}' must be a {typ.__name__}")
    for k in ("img_size", "num_classes", "threads"):
        _need(_int(d[k]) and d[k] > 0, where, f"'{k}' must be a positive integer")
    groups = []
    seen: list[int] = []
    for i, g in enumerate(d["groups"]):
        _need(isinstance(g, dict) and set(g) == {"blocks", "geom", "widths"}, where,
              f"group {i} needs exactly 'blocks', 'geom', 'widths'")
        blocks, widths = g["blocks"], g["widths"]
        _need(isinstance(blocks, list) and blocks and all(_int(b) and b >= 0 for b in blocks), where,
              f"group {i} 'blocks' must be a non-empty list of block indices")
        _need(isinstance(widths, list) and len(widths) >= 2 and all(_int(w) for w in widths), where,
              f"group {i} 'widths' must list at least two integer widths")
        _need(widths[0] == 0 and all(a < b for a, b in zip(widths, widths[1:])), where,
              f"group {i} 'widths' must start at 0 and increase")
        _need(isinstance(g["geom"], dict) and g["geom"].get("dense_width") == widths[-1], where,
              f"group {i} 'widths' must end at the dense width")
        seen += blocks
        groups.append(BlockGroup(blocks=tuple(blocks), geom=dict(g["geom"]), widths=tuple(widths)))
    _need(sorted(seen) == list(range(len(seen))) and seen, where, "the groups must cover blocks 0..depth-1 once each")
    batches: dict[int, BatchTable] = {}
    _need(bool(d["batches"]), where, "no batch sizes")
    for key, t in d["batches"].items():
        bw = f"batch {key}"
        _need(key.isdigit() and int(key) > 0 and isinstance(t, dict), where, f"{bw}: batch keys must be positive integers")
        _need(set(t) - {"correction"} == {"batch", "fixed_ms", "dense_ms", "groups", "configs"}, where,
              f"{bw} needs exactly 'batch', 'fixed_ms', 'dense_ms', 'groups', 'configs' (and optionally 'correction')")
        corr = t.get("correction")
        _need(corr is None or (isinstance(corr, dict) and _num(corr.get("delta_scale")) and corr["delta_scale"] > 0),
              where, f"{bw}: 'correction' must hold a positive 'delta_scale'")
        _need(t["batch"] == int(key), where, f"{bw}: 'batch' is {t['batch']!r}")
        _need(_num(t["fixed_ms"]) and t["fixed_ms"] > 0 and _num(t["dense_ms"]) and t["dense_ms"] > 0, where,
              f"{bw}: 'fixed_ms' and 'dense_ms' must be positive numbers")
        _need(isinstance(t["groups"], list) and len(t["groups"]) == len(groups), where,
              f"{bw}: needs one entry per group ({len(groups)})")
        gl = []
        for gi, (e, g) in enumerate(zip(t["groups"], groups)):
            _need(isinstance(e, dict) and set(e) == {"attn_ms", "ffn_ms"}, where, f"{bw} group {gi}: needs 'attn_ms', 'ffn_ms'")
            a, f = e["attn_ms"], e["ffn_ms"]
            _need(isinstance(a, dict) and set(a) == set(ATTN_OPS) and all(_num(v) for v in a.values()), where,
                  f"{bw} group {gi}: 'attn_ms' must give a number for each of {list(ATTN_OPS)}")
            _need(isinstance(f, list) and len(f) == len(g.widths) and all(_num(v) for v in f) and f[0] == 0, where,
                  f"{bw} group {gi}: 'ffn_ms' must give one number per width, 0 at width 0")
            gl.append(GroupLatency(attn_ms={k: float(a[k]) for k in ATTN_OPS}, ffn_ms=tuple(float(v) for v in f)))
        _need(isinstance(t["configs"], list), where, f"{bw}: 'configs' must be a list")
        batches[int(key)] = BatchTable(batch=int(key), fixed_ms=float(t["fixed_ms"]), dense_ms=float(t["dense_ms"]),
                                       groups=tuple(gl), configs=tuple(t["configs"]), correction=corr)
    return LatencyTable(model=d["model"], family=d["family"], img_size=d["img_size"], num_classes=d["num_classes"],
                        backend=d["backend"], precision=d["precision"], threads=d["threads"],
                        environment=d["environment"], export=d["export"], timing=d["timing"], groups=tuple(groups),
                        batches=dict(sorted(batches.items())))


def load_lut(path: str | os.PathLike[str]) -> LatencyTable:
    """Read and validate a latency table (one-line `SpvitError` for a missing, unreadable or malformed file)."""
    p = Path(path)
    if not p.is_file():
        raise SpvitError(f"latency table '{p}' does not exist; make one with 'spvit-deploy profile-latency'")
    try:
        raw = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpvitError(f"latency table '{p}' is not readable JSON ({type(e).__name__}: {str(e)[:120]})") from None
    return LatencyTable.from_dict(raw, where=f"latency table '{p}'")


# FFN widths the backend favours: TensorRT and CUDA GEMMs in fp16 run tensor-core tiles of 8 (widths off the
# multiple pad or fall back); ORT and torch on CPU: no multiple measured to pay (benchmarks/latency_ffn_multiple.py)
FAVOURED_FFN_MULTIPLE = {"tensorrt": 8, "onnxruntime-cuda": 8, "torch-cuda": 8}


def default_ffn_multiple(lut: "LatencyTable") -> int:
    """The multiple derived FFN widths are rounded to by default for the table's backend (1: none)."""
    return FAVOURED_FFN_MULTIPLE.get(lut.backend, 1)


# -- the machine and runtime ------------------------------------------------------------------------

def here_fingerprint(backend: str, threads: int, precision: str) -> dict[str, Any]:
    """What a latency depends on besides the network: CPU model and vector flags, GPUs, the runtime's
    library versions, threads, precision."""
    from ..host import cpu_flags, cpu_model, gpus, versions

    v = versions()
    libs = {k: v[k] for k in ("spvit-deploy", *BACKEND_LIBS.get(backend, ())) if k in v}
    return {"backend": backend, "precision": precision, "threads": threads, "cpu_model": cpu_model(),
            "cpu_flags": cpu_flags(), "gpus": gpus() if "cuda" in backend or backend == "tensorrt" else [],
            "libraries": libs}


def check_compatible(lut: LatencyTable, here: dict[str, Any], where: str = "latency table") -> list[str]:
    """Raise a one-line `SpvitError` when `lut` was measured on another machine or runtime than `here`
    (a `here_fingerprint`); return warnings for the benign differences (library patch versions)."""
    env = lut.environment
    hard = [("backend", lut.backend, here["backend"]), ("precision", lut.precision, here["precision"]),
            ("threads", lut.threads, here["threads"]), ("CPU", env.get("cpu_model"), here["cpu_model"]),
            ("CPU flags", sorted(env.get("cpu_flags", [])), sorted(here["cpu_flags"])),
            ("GPUs", env.get("gpus", []), here["gpus"])]
    for what, theirs, ours in hard:
        if theirs != ours:
            raise SpvitError(f"{where} was measured with {what} {_show(theirs)}, this machine has {_show(ours)}; "
                             "profile this machine with 'spvit-deploy profile-latency'")
    warnings = []
    theirs_libs, ours_libs = env.get("libraries", {}), here["libraries"]
    for lib in sorted(set(theirs_libs) | set(ours_libs)):
        a, b = theirs_libs.get(lib), ours_libs.get(lib)
        if a == b:
            continue
        if a is None or b is None or a.split(".")[:2] != b.split(".")[:2]:
            raise SpvitError(f"{where} was measured with {lib} {a or 'absent'}, this machine has {b or 'absent'}; "
                             "profile again with 'spvit-deploy profile-latency'")
        warnings.append(f"{where} was measured with {lib} {a}, this machine has {b} (same minor version: used)")
    return warnings


def check_here(lut: LatencyTable, where: str = "latency table") -> list[str]:
    """Refuse a table measured on another machine or runtime than this one (one line); print and return
    the benign differences."""
    import sys

    from ..host import usable_cpus

    if lut.threads > usable_cpus():
        raise SpvitError(f"{where} was measured with {lut.threads} threads, this process may use {usable_cpus()} "
                         "CPUs; profile this machine with 'spvit-deploy profile-latency'")
    warnings = check_compatible(lut, here_fingerprint(lut.backend, lut.threads, lut.precision), where)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return warnings


def _show(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ",".join(map(str, v)) + "]" if v else "none"
    return repr(v) if isinstance(v, str) else str(v)
