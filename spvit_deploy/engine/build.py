"""ONNX -> TensorRT engine: a strongly typed network from the ONNX parser, optimization profiles on
the batch axis (one per batch size the engine is tuned for), a timing cache reused and merged across
builds, and the plan written atomically with a JSON sidecar (`model.plan` -> `model.json`).

The builder only builds: the graph it receives comes from `spvit_deploy.passes.prepare_graph`
(export of a run, fp16 conversion, plugin nodes). `build_engine` needs TensorRT and a GPU and says
in one line when either is missing.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import SpvitError, require
from .timing_cache import TimingCache

SIDECAR_VERSION = 1
PLUGIN_IMPLS = ("aot", "jit")


@dataclass(frozen=True)
class BuildSettings:
    """How to build: precision/plugin passes, the batch profile, workspace, timing cache."""

    fp16: bool = False
    plugins: bool = False
    plugin_impl: str = "aot"  # aot: kernels inside the engine; jit: Python callbacks (TensorRT < 10.9)
    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 64
    opt_batches: tuple[int, ...] = ()  # one profile per batch (min..max, tuned at that batch); () = opt_batch
    workspace_gb: float | None = None
    timing_cache: str | None = None
    optimization_level: int | None = None  # builder_optimization_level 0-5 (TensorRT's default: 3)
    ptx_version: int | None = None  # cap the PTX ISA of the plugin kernels (older drivers)
    verbose: bool = False
    detailed_profile: bool = False  # ProfilingVerbosity.DETAILED: layer/tactic names for the engine inspector

    def __post_init__(self) -> None:
        b = (self.min_batch, min(self.opt_batches) if self.opt_batches else self.opt_batch, self.max_batch)
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in b) or not b[0] <= b[1] <= b[2]:
            raise SpvitError(f"batch profile must be 1 <= min <= opt <= max, got min={b[0]} opt={b[1]} max={b[2]}")
        bad = [v for v in self.opt_batches if not isinstance(v, int) or isinstance(v, bool)
               or not 1 <= self.min_batch <= v <= self.max_batch]
        if bad or len(set(self.opt_batches)) != len(self.opt_batches):
            raise SpvitError(f"profile batches {list(self.opt_batches)} must be distinct and within "
                             f"{self.min_batch}..{self.max_batch}")
        if self.plugin_impl not in PLUGIN_IMPLS:
            raise SpvitError(f"--plugin-impl must be one of {', '.join(PLUGIN_IMPLS)}, not '{self.plugin_impl}'")
        if self.workspace_gb is not None and not self.workspace_gb > 0:
            raise SpvitError(f"--workspace-gb must be positive, got {self.workspace_gb}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise SpvitError(f"--optimization-level must be 0-5, got {self.optimization_level}")

    @property
    def profile(self) -> dict[str, int]:
        """The first profile (engines built with one profile have only this one)."""
        return self.profiles[0]

    @property
    def profiles(self) -> list[dict[str, int]]:
        """One {min, opt, max} per optimization profile, in profile-index order."""
        return [{"min": self.min_batch, "opt": o, "max": self.max_batch} for o in (self.opt_batches or (self.opt_batch,))]


# ------------------------------------------------------------------------------ the graph


def sidecar_path(plan: str | os.PathLike[str]) -> Path:
    """The JSON written beside an engine: `model.plan` -> `model.json`."""
    return Path(plan).with_suffix(".json")


def build_graph_path(plan: str | os.PathLike[str]) -> Path:
    """Where the graph an engine is built from is kept when build-engine made it: `model.trt.onnx`."""
    p = Path(plan)
    return p.with_name(f"{p.stem}.trt.onnx")


# ------------------------------------------------------------------------------ TensorRT pieces


def network_flags(trt: Any, plugin_impl: str | None) -> int:
    """Strongly typed (required on 10.x, always on in 11, where the flag is accepted and ignored), plus
    the AOT/JIT preference for plugins that define both implementations."""
    F = trt.NetworkDefinitionCreationFlag
    flags = 0
    if hasattr(F, "STRONGLY_TYPED"):
        flags |= 1 << int(F.STRONGLY_TYPED)
    if plugin_impl == "aot" and hasattr(F, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(F.PREFER_AOT_PYTHON_PLUGINS)
    elif plugin_impl == "jit" and hasattr(F, "PREFER_JIT_PYTHON_PLUGINS"):
        flags |= 1 << int(F.PREFER_JIT_PYTHON_PLUGINS)
    return flags


def parser_errors(parser: Any) -> list[str]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        where = ""
        with contextlib.suppress(Exception):
            where = f" at node '{e.node_name()}' ({e.node_operator()})"
        desc = e.desc() if hasattr(e, "desc") else str(e)
        out.append(f"{desc}{where}")
    return out


def set_batch_profile(builder: Any, network: Any, config: Any, settings: BuildSettings) -> list[dict[str, Any]]:
    """One optimization profile per entry of `settings.profiles`: every input's batch axis from min to max,
    tuned at that profile's opt batch, the other axes fixed. Returns the shapes of each profile."""
    fixed: dict[str, tuple[int, ...]] = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(int(d) for d in t.shape)
        if not shape or shape[0] != -1:
            raise SpvitError(f"input '{t.name}' has a fixed batch {list(shape)}; export with a dynamic batch axis")
        if any(d < 0 for d in shape[1:]):
            raise SpvitError(f"input '{t.name}' has dynamic axes besides the batch {list(shape)}; export at a fixed size")
        fixed[t.name] = shape[1:]
    out = []
    for p in settings.profiles:
        profile = builder.create_optimization_profile()
        shapes: dict[str, Any] = {}
        for name, rest in fixed.items():
            mn, opt, mx = ((b, *rest) for b in (p["min"], p["opt"], p["max"]))
            profile.set_shape(name, mn, opt, mx)
            shapes[name] = {"min": list(mn), "opt": list(opt), "max": list(mx)}
        if config.add_optimization_profile(profile) < 0:
            raise SpvitError(f"TensorRT rejected the optimization profile {p}")
        out.append(shapes)
    return out


def network_io(trt: Any, network: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """[{name, dtype (numpy spelling), shape (-1 = dynamic)}] for the network's inputs and outputs."""
    import numpy as np

    def row(t: Any) -> dict[str, Any]:
        return {"name": t.name, "dtype": np.dtype(trt.nptype(t.dtype)).name, "shape": [int(d) for d in t.shape]}

    return ([row(network.get_input(i)) for i in range(network.num_inputs)],
            [row(network.get_output(i)) for i in range(network.num_outputs)])


def write_engine(out: Path, plan: bytes, meta: dict[str, Any]) -> None:
    """The plan and its sidecar, each through a temporary file renamed into place, the plan last; on
    any failure the previous sidecar (or none) is put back, so a sidecar always describes the plan."""
    from .._io import atomic_path, write_bytes, write_json

    side = sidecar_path(out)
    previous = side.read_bytes() if side.is_file() else None
    try:
        with atomic_path(out) as tmp_plan:
            tmp_plan.write_bytes(plan)
            write_json(side, meta)
    except BaseException:
        if previous is None:
            side.unlink(missing_ok=True)
        else:
            write_bytes(side, previous)
        raise


def plugin_records(count: int, impl: str | None, ptx: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The sidecar's `plugins`: name, library (None: nothing to load), implementation, node count, and
    for AOT kernels the PTX ISA they carry and the driver they were built under (`ptx`)."""
    from ..passes.plugins import PLUGIN_NAME, PLUGIN_VERSION

    if not count:
        return []
    return [{"name": PLUGIN_NAME, "version": PLUGIN_VERSION, "library": None, "implementation": impl,
             "count": count, "python_needed_at_runtime": impl == "jit", **(ptx or {})}]


def graph_for_impl(onnx: str | os.PathLike[str], proto: Any, impl: str, tmp: str) -> Path:
    """The graph TensorRT parses: `onnx` itself when its plugin nodes already say `aot` as `impl` wants,
    else a copy in `tmp` with the attribute set (AOT) or removed (JIT: TensorRT < 10.9 does not know it)."""
    from ..onnx_io import save_model
    from ..passes.plugins import set_plugin_aot

    if not set_plugin_aot(proto, impl == "aot"):
        return Path(onnx)
    return save_model(proto, Path(tmp) / Path(onnx).name)


def build_engine(onnx: str | os.PathLike[str], out: str | os.PathLike[str], settings: BuildSettings | None = None,
                 *, source: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build `onnx` into a TensorRT plan at `out` with its sidecar; returns the sidecar's content."""
    import tempfile

    from .. import __version__
    from ..artefacts import DeployMetadata, EngineSidecar, load
    from ..onnx_io import get_metadata, load_model, sha256_file
    from ..passes.checks import check_graph
    from ..passes.fp16 import graph_precision
    from .device import MIN_TRT_AOT, MIN_TRT_PLUGINS, aot_ptx_version, gpu_info, require_tensorrt, trt_version

    settings = settings or BuildSettings()
    say = log or (lambda msg: None)
    out = Path(out)
    if out.is_dir():
        raise SpvitError(f"--out '{out}' is a folder; give a file name such as model.plan")
    if sidecar_path(out) == out:
        raise SpvitError(f"--out '{out}' would be overwritten by the engine's JSON sidecar; use a name such as "
                         "model.plan")
    trt = require_tensorrt()
    gpu = gpu_info()
    proto = load_model(onnx)
    checks = check_graph(proto)
    if not checks.batch_dynamic:
        raise SpvitError(f"'{onnx}' has a fixed batch axis; re-export it (the profile needs a dynamic batch)")
    graph_meta = get_metadata(proto)
    if graph_meta:  # a graph from 'spvit-deploy export': its deploy metadata must be valid
        load(DeployMetadata, graph_meta, str(onnx))
    impl: str | None = None
    ptx: dict[str, Any] = {}
    if checks.plugin_nodes:
        from .trt_plugin import register_plugin, set_aot_target

        if trt_version(trt) < MIN_TRT_PLUGINS:
            raise SpvitError(f"TensorRT {trt.__version__} has no tensorrt.plugin; plugins need 10.6+ (AOT 10.9+)")
        impl = settings.plugin_impl
        if impl == "aot" and trt_version(trt) < MIN_TRT_AOT:
            say(f"TensorRT {trt.__version__} has no AOT plugins (10.9+): falling back to the JIT implementation, "
                f"the engine will need Python at run time")
            impl = "jit"
        if impl == "aot":
            require("triton", "triton", "triton (the plugin kernels are compiled at build time)")
            if os.environ.get("TRITON_INTERPRET") == "1":
                raise SpvitError("TRITON_INTERPRET=1 is set: the plugin kernels cannot be compiled for the GPU; "
                                 "unset it for build-engine")
            from spvit_kernels.trt_kernel import check_triton

            try:
                check_triton()
            except RuntimeError as e:
                raise SpvitError(str(e)) from None
        defs = register_plugin(aot=impl == "aot", jit=True)
        impl = "aot" if impl == "aot" and defs.aot else "jit"
        if impl == "aot":  # the PTX ISA the driver here can load (one-line error when it is too old)
            ptx = aot_ptx_version(gpu.cc, settings.ptx_version)
        set_aot_target(gpu.cc, ptx.get("ptx_version_cap"))
    logger = trt.Logger(trt.Logger.VERBOSE if settings.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, impl))
    parser = trt.OnnxParser(network, logger)
    if impl == "aot":
        from .trt_plugin import compiled_ptx_versions

        compiled_ptx_versions()  # forget kernels of earlier builds in this process
    with tempfile.TemporaryDirectory(prefix="spvit-build-") as tmp:
        parsed = graph_for_impl(onnx, proto, impl, tmp) if impl else Path(onnx)
        if not parser.parse_from_file(str(parsed)):
            errors = parser_errors(parser)
            raise SpvitError(f"TensorRT's ONNX parser rejected '{onnx}': {errors[0] if errors else 'no detail'}"
                             + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    config = builder.create_builder_config()
    if settings.workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gb * 2**30))
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    if settings.detailed_profile and hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    shapes = set_batch_profile(builder, network, config, settings)
    cache = TimingCache(settings.timing_cache)
    cache.attach(config)
    say(f"building {out.name} on {gpu.name} (sm_{gpu.cc}) with TensorRT {trt.__version__}")
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise SpvitError("TensorRT could not build the engine (its log above says why); nothing was written")
    build_s = time.perf_counter() - t0
    inputs, outputs = network_io(trt, network)
    if impl == "aot":
        from .trt_plugin import compiled_ptx_versions

        ptx["ptx_versions"] = compiled_ptx_versions()
    meta = {
        "sidecar_version": SIDECAR_VERSION,
        "spvit_deploy": __version__,
        "tensorrt_version": str(trt.__version__),
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "precision": graph_precision(proto),
        "strongly_typed": True,
        "profile": settings.profile,
        "profiles": settings.profiles,
        "profile_shapes": shapes[0],
        "profiles_shapes": shapes,
        "plugins": plugin_records(checks.plugin_nodes, impl, ptx),
        "onnx": {"path": str(onnx), "sha256": sha256_file(onnx)},
        "source": source or {},
        "inputs": inputs,
        "outputs": outputs,
        "workspace_gb": settings.workspace_gb,
        "timing_cache": cache.to_dict(),
        "build_seconds": round(build_s, 2),
        "model": graph_meta.get("model"),
        "variant": graph_meta.get("variant"),
    }
    load(EngineSidecar, meta, str(sidecar_path(out)))  # what is written passes the reader's checks
    write_engine(out, bytes(memoryview(plan)), meta)  # the plan first: a cache problem never loses it
    cache.save(config)
    if cache.to_dict() != meta["timing_cache"]:  # what saving did (bytes written, a note) goes in the sidecar
        from .._io import write_json

        meta["timing_cache"] = cache.to_dict()
        with contextlib.suppress(OSError):
            write_json(sidecar_path(out), meta)
    return meta


def read_sidecar(plan: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of an engine, validated (an empty dict when there is none)."""
    from ..artefacts import EngineSidecar, load

    p = sidecar_path(plan)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError:
        raise SpvitError(f"{p} is not valid JSON; rebuild the engine") from None
    load(EngineSidecar, data, str(p))
    return data


def settings_dict(settings: BuildSettings) -> dict[str, Any]:
    return asdict(settings)
