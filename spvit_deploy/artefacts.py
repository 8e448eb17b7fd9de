"""Typed, versioned artefacts and the one validator they share.

Each artefact other than the spec and the train config (run meta, a search's state, the deploy
metadata inside an ONNX graph, an engine's sidecar, benchmark results) is a small frozen dataclass
with a schema version. `load(cls, data, where)` checks a dict read from disk: unknown or missing keys, wrong
types and impossible values give a one-line `SpvitError`; a version newer than this code, or an
older one it cannot read, is refused with how to regenerate the file.
"""
from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping, TypeVar, Union

from .errors import SpvitError

A = TypeVar("A", bound="Artefact")


@dataclass(frozen=True)
class Artefact:
    """Base of the artefacts: the schema version lives in the field named by `VERSION_KEY`."""

    KIND: ClassVar[str] = "artefact"  # how errors name it ("run meta")
    VERSION_KEY: ClassVar[str] = "version"
    VERSION: ClassVar[int] = 1
    REGENERATE: ClassVar[str] = "regenerate it"  # how to make a current one ("re-run 'spvit-deploy materialize'")
    OMIT_NONE: ClassVar[tuple[str, ...]] = ()  # optional keys written only when set

    def check(self) -> list[str]:
        """Impossible values, as short phrases (empty: fine)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (v is None and k in self.OMIT_NONE)}


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is not None:
        hint = origin
    if hint in (list, tuple):  # JSON has lists only; Python callers may hand tuples
        return isinstance(value, (list, tuple))
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def load(cls: type[A], data: Any, where: str) -> A:
    """`cls` from `data` (a dict read from `where`), validated; one-line `SpvitError` on any problem."""
    fix = f"{cls.REGENERATE}"
    if not isinstance(data, Mapping):
        raise SpvitError(f"{where}: a {cls.KIND} must be a JSON object, got {type(data).__name__}; {fix}")
    version = data.get(cls.VERSION_KEY)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SpvitError(f"{where}: no valid '{cls.VERSION_KEY}' (an older or foreign {cls.KIND}); {fix}")
    if version > cls.VERSION:
        raise SpvitError(f"{where}: {cls.KIND} version {version} is newer than this spvit-deploy reads "
                         f"({cls.VERSION}); upgrade spvit-deploy or {fix}")
    if version < cls.VERSION:
        raise SpvitError(f"{where}: {cls.KIND} version {version} is no longer read (current: {cls.VERSION}); {fix}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SpvitError(f"{where}: unknown {cls.KIND} key(s) {unknown}; known: {sorted(known)}")
    missing = sorted(n for n, f in known.items()
                     if n not in data and f.default is MISSING and f.default_factory is MISSING)
    if missing:
        raise SpvitError(f"{where}: {cls.KIND} lacks {missing}; {fix}")
    for name, value in data.items():
        if not _type_ok(value, hints[name]):
            raise SpvitError(f"{where}: {cls.KIND} '{name}' must be {_type_name(hints[name])}, got {value!r:.60}")
    obj = cls(**dict(data))
    problems = obj.check()
    if problems:
        raise SpvitError(f"{where}: impossible {cls.KIND}: {'; '.join(problems)}")
    return obj


# ------------------------------------------------------------------------------ the artefacts


@dataclass(frozen=True)
class RunMeta(Artefact):
    """`meta.json` of a run folder: what a server needs besides the spec (preprocessing, cost)."""

    KIND: ClassVar[str] = "run meta"
    VERSION_KEY: ClassVar[str] = "meta_version"
    REGENERATE: ClassVar[str] = ("re-write the run folder ('spvit-deploy materialize', 'compress' or "
                                 "'import-official')")
    OMIT_NONE: ClassVar[tuple[str, ...]] = ("source",)  # written when a stage records where the weights came from

    meta_version: int
    spvit_deploy: str
    model: str
    num_classes: int
    data_config: dict[str, Any]
    gmacs: float
    params: int
    source: dict[str, Any] | None = None

    def check(self) -> list[str]:
        bad = [f"{n} {v} < 0" for n, v in (("gmacs", self.gmacs), ("params", self.params)) if v < 0]
        return bad + ([f"num_classes {self.num_classes} < 1"] if self.num_classes < 1 else [])


@dataclass(frozen=True)
class SearchState(Artefact):
    """`search_state.json` beside a search's weights: what rebuilds the searched supernet by itself (the
    dense model it wraps, its head-mixing alpha) and the spec derived from it at the target."""

    KIND: ClassVar[str] = "search state"
    VERSION_KEY: ClassVar[str] = "search_state_version"
    REGENERATE: ClassVar[str] = "re-run 'spvit-deploy search' into that folder"

    search_state_version: int
    spvit_deploy: str
    model: str  # the timm name
    family: str
    alpha: float
    img_size: int
    num_classes: int
    weights: str  # the weights file beside it
    spec: dict[str, Any]

    def check(self) -> list[str]:
        bad = [f"{n} {v} < 1" for n, v in (("img_size", self.img_size), ("num_classes", self.num_classes)) if v < 1]
        bad += [f"alpha {self.alpha} <= 0"] if not self.alpha > 0 else []
        return bad + ([f"weights '{self.weights}' is not a file name"] if not self.weights or "/" in self.weights else [])


@dataclass(frozen=True)
class DeployMetadata(Artefact):
    """The `spvit.*` metadata an exported ONNX graph carries; the graph passes add their records."""

    KIND: ClassVar[str] = "ONNX deploy metadata"
    VERSION_KEY: ClassVar[str] = "metadata_version"
    REGENERATE: ClassVar[str] = "re-export the graph with 'spvit-deploy export'"
    OMIT_NONE: ClassVar[tuple[str, ...]] = ("precision", "fp16", "plugins", "engine_passes")  # the passes' records

    metadata_version: int
    spvit_deploy: str
    variant: str
    model: str
    input_size: list[int]
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float
    num_classes: int
    gmacs: float
    opset: int
    pad_widths: int | None
    spec: dict[str, Any]
    # added by the graph passes (`spvit_deploy.passes`)
    precision: str | None = None
    fp16: dict[str, Any] | None = None
    plugins: dict[str, Any] | None = None
    engine_passes: dict[str, Any] | None = None

    def check(self) -> list[str]:
        bad = []
        if self.variant not in ("dense", "compressed"):
            bad.append(f"variant '{self.variant}' is not dense or compressed")
        if len(self.input_size) != 3 or any(v < 1 for v in self.input_size):
            bad.append(f"input_size {self.input_size} is not [C, H, W]")
        return bad


@dataclass(frozen=True)
class EngineSidecar(Artefact):
    """`model.json` beside a TensorRT plan: how it was built, for what GPU, from which graph. Fields after
    `tensorrt_version` came one by one; sidecars from before them still load (None)."""

    KIND: ClassVar[str] = "engine sidecar"
    VERSION_KEY: ClassVar[str] = "sidecar_version"
    REGENERATE: ClassVar[str] = "rebuild the engine with 'spvit-deploy build-engine'"

    sidecar_version: int
    spvit_deploy: str
    tensorrt_version: str
    gpu: str | None = None
    compute_capability: str | None = None
    precision: str | None = None
    strongly_typed: bool | None = None
    profile: dict[str, int] | None = None
    profiles: list[dict[str, int]] | None = None
    profile_shapes: dict[str, Any] | None = None
    profiles_shapes: list[dict[str, Any]] | None = None
    plugins: list[dict[str, Any]] | None = None
    onnx: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    workspace_gb: float | None = None
    timing_cache: dict[str, Any] | None = None
    build_seconds: float | None = None
    model: str | None = None
    variant: str | None = None

    def check(self) -> list[str]:
        bad = []
        for p in self.profiles or ([self.profile] if self.profile else []):
            if not 1 <= p.get("min", 0) <= p.get("opt", 0) <= p.get("max", 0):
                bad.append(f"profile {p} is not 1 <= min <= opt <= max")
        if self.build_seconds is not None and self.build_seconds < 0:
            bad.append(f"build_seconds {self.build_seconds} < 0")
        return bad


@dataclass(frozen=True)
class BenchResults(Artefact):
    """`results.json` of a benchmark: the environment, the settings and one section per model pair."""

    KIND: ClassVar[str] = "benchmark results"
    VERSION_KEY: ClassVar[str] = "results_version"
    REGENERATE: ClassVar[str] = "re-run 'spvit-deploy benchmark' (or the script that wrote it)"

    results_version: int
    kind: str
    settings: dict[str, Any]
    environment: dict[str, Any]
    models: list[dict[str, Any]]
    speedups: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    ablations: list[dict[str, Any]] = field(default_factory=list)
