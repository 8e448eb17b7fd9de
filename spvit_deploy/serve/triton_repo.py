"""Triton Inference Server model repositories: `REPO/NAME/{config.pbtxt, 1/model.onnx|model.plan, labels.txt}`.

`export_triton` writes a run's compressed model (and the dense one it came from) side by side;
`write_model` assembles one model folder beside its final place, checks it with
`check_model_dir` and only then renames it into the repository.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .._io import write_json, write_text
from ..errors import SpvitError, require
from .triton_config import (
    BACKENDS,
    CONFIG_FILE,
    DEFAULT_MAX_BATCH,
    KINDS,
    LABELS_FILE,
    NAME_RE,
    PREPROCESS_FILE,
    VERSION,
    ModelSignature,
    TensorInfo,
    build_config,
    check_model_dir,
    config_text,
    default_preferred,
    engine_meta_path,
    engine_signature,
    model_signature,
)

@dataclass(frozen=True)
class TritonModel:
    """A model folder written into a repository."""

    name: str
    path: Path
    platform: str
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    instances: int
    kind: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# ---------------------------------------------------------------- writing a model folder


def class_labels(num_classes: int, labels_file: str | os.PathLike[str] | None = None) -> list[str]:
    """Class names: from a file (one a line), ImageNet's for 1000 classes, else class_0 .. class_{n-1}."""
    if labels_file is not None:
        p = Path(labels_file)
        if not p.is_file():
            raise SpvitError(f"labels file '{p}' does not exist")
        labels = [ln.strip() for ln in p.read_text().splitlines()]
        while labels and not labels[-1]:
            labels.pop()
        if len(labels) != num_classes:
            raise SpvitError(f"labels file '{p}' has {len(labels)} labels; the model has {num_classes} classes")
        return labels
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]
    return [f"class_{i}" for i in range(num_classes)]


def _copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX file and any external-data files it references."""
    onnx = require("onnx", "onnx")
    shutil.copyfile(src, dst)
    model = onnx.load(str(src), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                (dst.parent / e.value).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src.parent / e.value, dst.parent / e.value)


def _label_output(sig: ModelSignature, num_classes: int) -> str:
    hits = [t.name for t in sig.outputs if len(t.shape) == 2 and t.shape[1] == num_classes]
    if len(sig.outputs) == 1 and not hits:
        t = sig.outputs[0]
        raise SpvitError(f"model output '{t.name}' has shape {list(t.shape)}, not (B, {num_classes}) as the run says")
    if not hits:
        raise SpvitError(f"no model output has shape (B, {num_classes}) for the class labels")
    return hits[0]


def write_model(
    repo: str | os.PathLike[str],
    name: str,
    model_file: str | os.PathLike[str] | Callable[[Path], None],
    *,
    backend: str = "onnxruntime",
    num_classes: int,
    labels: Sequence[str] | None = None,
    preprocess: dict[str, Any] | None = None,
    max_batch: int | None = None,
    preferred: Sequence[int] | None = None,
    max_queue_delay_us: int = 100,
    instances: int = 1,
    kind: str = "gpu",
    force: bool = False,
    source: str = "",
    notes: Sequence[str] = (),
) -> TritonModel:
    """Write `repo/name` from a model file (or a function that writes one), atomically.

    The folder is assembled beside its final place, checked with `check_model_dir`, and only
    then renamed over `repo/name` (which must not exist unless `force`).
    """
    _check_options(name, backend, kind, instances, max_batch, max_queue_delay_us)
    root = Path(repo)
    dest = root / name
    if root.exists() and not root.is_dir():
        raise SpvitError(f"--repo '{root}' exists and is not a folder")
    if dest.exists() and not force:
        raise SpvitError(f"{dest} already exists; pass --force to replace it")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        vdir = tmp / VERSION
        vdir.mkdir()
        target = vdir / BACKENDS[backend][1]
        all_notes = list(notes)
        if callable(model_file):
            model_file(target)
        else:
            src = Path(model_file)
            want = BACKENDS[backend][1].rsplit(".", 1)[1]
            if not src.is_file():
                raise SpvitError(f"model file '{src}' does not exist")
            if src.suffix != f".{want}":
                raise SpvitError(f"--backend {backend} serves .{want} files, not '{src.name}'")
            if backend == "tensorrt":
                sig, meta = engine_signature(src)
                shutil.copyfile(src, target)
                write_json(vdir / engine_meta_path(target).name, meta)
                all_notes += _engine_notes(meta)
            else:
                _copy_onnx(src, target)
        sig = model_signature(target)
        mb = _max_batch(max_batch, sig)
        label_output = _label_output(sig, num_classes)
        pref = tuple(preferred) if preferred else default_preferred(mb, sig.profile[1] if sig.profile else None)
        cfg = build_config(name, backend, sig, max_batch=mb, preferred=pref, max_queue_delay_us=max_queue_delay_us,
                           instances=instances, kind=kind, label_output=label_output)
        write_text(tmp / LABELS_FILE, "".join(f"{lb}\n" for lb in (labels or [f"class_{i}" for i in range(num_classes)])))
        if preprocess:
            write_json(tmp / PREPROCESS_FILE, preprocess)
        write_text(tmp / CONFIG_FILE, config_text(cfg, source))
        check_model_dir(tmp, name)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TritonModel(name, dest, BACKENDS[backend][0], mb, pref, instances, KINDS[kind], sig.inputs, sig.outputs,
                       tuple(all_notes))


def _check_options(name: str, backend: str, kind: str, instances: int, max_batch: int | None, delay: int) -> None:
    if backend not in BACKENDS:
        raise SpvitError(f"unknown backend '{backend}'; use one of: {', '.join(BACKENDS)}")
    if not NAME_RE.match(name):
        raise SpvitError(f"model name '{name}' must be letters, digits, '_', '-' or '.' (a folder name Triton accepts)")
    if kind not in KINDS:
        raise SpvitError(f"unknown instance kind '{kind}'; use one of: {', '.join(KINDS)}")
    if backend == "tensorrt" and kind == "cpu":
        raise SpvitError("TensorRT engines run on GPUs only; use --kind gpu (or --backend onnxruntime for CPU)")
    if instances < 1:
        raise SpvitError(f"--instances must be >= 1, not {instances}")
    if max_batch is not None and max_batch < 1:
        raise SpvitError(f"--max-batch must be >= 1, not {max_batch}")
    if delay < 0:
        raise SpvitError(f"--max-queue-delay-us must be >= 0, not {delay}")


def _max_batch(requested: int | None, sig: ModelSignature) -> int:
    for t in (*sig.inputs, *sig.outputs):
        if not t.shape or t.shape[0] != -1:
            raise SpvitError(f"model tensor '{t.name}' has a fixed batch dimension {list(t.shape)}; "
                             f"re-export it with a dynamic batch")
    if sig.profile is None:
        return requested or DEFAULT_MAX_BATCH
    lo, _, hi = sig.profile
    if lo > 1:
        raise SpvitError(f"engine profile min batch is {lo}; Triton batches from 1, rebuild the engine with min batch 1")
    if requested is not None and requested > hi:
        raise SpvitError(f"--max-batch {requested} exceeds the engine profile max batch {hi}; rebuild the engine "
                         f"or pass --max-batch {hi}")
    return requested or min(DEFAULT_MAX_BATCH, hi)


def _engine_notes(meta: dict[str, Any]) -> list[str]:
    """What the server needs for this engine; a plugin that calls back into Python cannot be served."""
    for p in meta.get("plugins") or []:
        if isinstance(p, dict) and (p.get("python_needed_at_runtime") or p.get("implementation") == "jit"):
            raise SpvitError(f"engine plugin {p.get('name', '?')} runs its JIT (Python) implementation, which "
                             f"Triton's TensorRT backend cannot call; rebuild the engine with the AOT one "
                             f"(TensorRT >= 10.9)")
    notes = [f"engine: TensorRT {meta.get('tensorrt_version', '?')}, {meta.get('precision', '?')}"
             f"{', built on ' + meta['gpu'] if meta.get('gpu') else ''}; serve it with a tritonserver image "
             f"carrying the same TensorRT (docker/Dockerfile.server)"]
    for p in meta.get("plugins") or []:
        lib = p.get("library") if isinstance(p, dict) else None
        pname = p.get("name", "?") if isinstance(p, dict) else str(p)
        if lib:
            notes.append(f"plugin {pname} needs {lib} loaded: copy it into docker/plugins/ "
                         f"(the server image LD_PRELOADs every .so there)")
        else:
            notes.append(f"plugin {pname} is compiled ahead of time into the engine; nothing to preload")
    return notes


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Rename `tmp` to `dest`; an existing `dest` is moved aside first and removed after."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if old is not None:
            os.replace(old / dest.name, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- a run folder -> repository


def _export_onnx(run: str | os.PathLike[str], out: Path, *, dense: bool = False,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
    """The export stage: the run's compressed network (or the dense one) -> a parity-checked ONNX file."""
    from ..export import export_onnx, load_export_model

    m = load_export_model(run=run, dense=dense, checkpoint=checkpoint)
    export_onnx(m.module, out, spec=m.spec)


def export_triton(
    run: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    backend: str = "onnxruntime",
    name: str | None = None,
    dense: bool = False,
    onnx: str | os.PathLike[str] | None = None,
    dense_onnx: str | os.PathLike[str] | None = None,
    engine: str | os.PathLike[str] | None = None,
    dense_engine: str | os.PathLike[str] | None = None,
    dense_checkpoint: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    max_batch: int | None = None,
    preferred: Sequence[int] | None = None,
    max_queue_delay_us: int = 100,
    instances: int = 1,
    kind: str = "gpu",
    force: bool = False,
) -> list[TritonModel]:
    """Write the run's compressed model (and with `dense`, the dense model it came from) into `repo`.

    ONNX backend: the models are exported from the run unless `onnx` / `dense_onnx` are given.
    TensorRT backend: prebuilt engines (`engine`, `dense_engine`) with their JSON sidecars.
    """
    from ..run import load_run

    _check_options(name or "model", backend, kind, instances, max_batch, max_queue_delay_us)
    if backend == "tensorrt":
        if onnx or dense_onnx:
            raise SpvitError("--onnx/--dense-onnx are for --backend onnxruntime; TensorRT takes --engine/--dense-engine")
        if engine is None:
            raise SpvitError("--backend tensorrt needs --engine PLAN (build it with 'spvit-deploy build-engine')")
        if dense and dense_engine is None:
            raise SpvitError("--dense with --backend tensorrt needs --dense-engine PLAN (the dense model's engine)")
        for plan in (engine, dense_engine):
            if plan is not None:
                _engine_notes(engine_signature(plan)[1])  # fail on a bad engine or sidecar before writing
    elif engine or dense_engine:
        raise SpvitError("--engine/--dense-engine need --backend tensorrt")
    r = load_run(run)
    spec = r.spec
    names = [name or f"{spec.model}_spvit"] + ([f"{spec.model}_dense"] if dense else [])
    for n in names:
        _check_options(n, backend, kind, instances, max_batch, max_queue_delay_us)
        if (Path(repo) / n).exists() and not force:
            raise SpvitError(f"{Path(repo) / n} already exists; pass --force to replace it")
    if len(set(names)) != len(names):
        raise SpvitError(f"--name '{names[0]}' is the dense model's name; pick another")
    common = dict(backend=backend, num_classes=spec.num_classes, labels=class_labels(spec.num_classes, labels),
                  preprocess=r.meta.get("data_config"), max_batch=max_batch, preferred=preferred,
                  max_queue_delay_us=max_queue_delay_us, instances=instances, kind=kind, force=force)
    jobs: list[tuple[Any, list[str]]] = []
    if backend == "tensorrt":
        jobs = [(engine, []), (dense_engine, [])]
    else:
        jobs.append((onnx or (lambda p: _export_onnx(r.path, p)), []))
        if dense and dense_onnx:
            jobs.append((dense_onnx, []))
        elif dense:
            ck = _dense_checkpoint(r, dense_checkpoint)
            note = [] if ck else ["dense weights are random (the run records no dense checkpoint that exists here); "
                                  "pass --dense-checkpoint for real ones (latency is the same)"]
            jobs.append((lambda p: _export_onnx(r.path, p, dense=True, checkpoint=ck), note))
    return [write_model(repo, n, src, source=str(r.path), notes=note, **common)  # type: ignore[arg-type]
            for n, (src, note) in zip(names, jobs)]


def _dense_checkpoint(run: Any, checkpoint: str | os.PathLike[str] | None) -> str | None:
    """`checkpoint`, else the dense checkpoint the run's meta records (if it exists here), else None."""
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise SpvitError(f"--dense-checkpoint '{checkpoint}' does not exist")
        return str(checkpoint)
    recorded = (run.meta.get("source") or {}).get("checkpoint")
    return recorded if recorded and Path(recorded).is_file() else None
