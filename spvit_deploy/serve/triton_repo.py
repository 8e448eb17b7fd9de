"""Triton Inference Server model repositories: `REPO/NAME/{config.pbtxt, 1/model.onnx|model.plan, labels.txt}`.

The config is built as Triton's own `inference.ModelConfig` protobuf message (tritonclient ships
it) and written in protobuf text format. Tensor names, data types and dims come from the model
file (the ONNX graph, or the TensorRT engine's JSON sidecar), never typed by hand, and every model
folder is parsed back and checked against its model file before it replaces anything.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from .._io import write_json, write_text
from ..errors import SpvitError, require

# backend option -> (Triton platform, model file name Triton looks for in the version folder)
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime_onnx", "model.onnx"),
    "tensorrt": ("tensorrt_plan", "model.plan"),
}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
PREPROCESS_FILE = "preprocess.json"
VERSION = "1"
DEFAULT_MAX_BATCH = 64
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# engine sidecar dtype names (numpy spelling) -> Triton data types
SIDECAR_DTYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
    "int64": "TYPE_INT64", "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
}
_ONNX_DTYPES = {  # onnx.TensorProto element type name -> Triton data type
    "FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16", "DOUBLE": "TYPE_FP64",
    "INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "INT8": "TYPE_INT8", "UINT8": "TYPE_UINT8", "BOOL": "TYPE_BOOL",
}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output; `shape` includes the batch dimension, -1 where dynamic."""

    name: str
    dtype: str  # Triton data type name, e.g. "TYPE_FP32"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSignature:
    """What a model file accepts and returns; `profile` is the engine's (min, opt, max) batch."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    profile: tuple[int, int, int] | None = None


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


def model_config_pb2() -> ModuleType:
    """Triton's `model_config_pb2` (message `inference.ModelConfig`) as shipped in tritonclient.

    `tritonclient.grpc` refuses to import without grpcio, so without the grpc extra the generated
    module is loaded straight from its file: the same message, one dependency lighter.
    """
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except (ImportError, RuntimeError):
        pass
    require("google.protobuf", "serve", "protobuf")
    spec = importlib.util.find_spec("tritonclient")
    path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py" if spec else None
    if path is None or not path.is_file():
        raise SpvitError("tritonclient (for Triton's ModelConfig message) is not installed; "
                         "install it with: pip install 'spvit-deploy[serve]'")
    name = "spvit_deploy.serve._triton_model_config_pb2"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# ---------------------------------------------------------------- signatures of model files


def onnx_signature(path: str | os.PathLike[str]) -> ModelSignature:
    """Inputs (graph inputs that are not initializers) and outputs of an ONNX model."""
    onnx = require("onnx", "onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise SpvitError(f"cannot read ONNX model {path} ({type(e).__name__}); re-export it") from None
    names = {v: k for k, v in onnx.TensorProto.DataType.items()}
    inits = {t.name for t in model.graph.initializer}

    def info(v: Any) -> TensorInfo:
        tt = v.type.tensor_type
        dtype = _ONNX_DTYPES.get(names.get(tt.elem_type, ""))
        if dtype is None:
            raise SpvitError(f"{path}: tensor '{v.name}' has ONNX type {names.get(tt.elem_type, tt.elem_type)}, "
                             f"which Triton cannot serve here")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        return TensorInfo(v.name, dtype, dims)

    return ModelSignature(
        inputs=tuple(info(v) for v in model.graph.input if v.name not in inits),
        outputs=tuple(info(v) for v in model.graph.output),
    )


def engine_meta_path(plan: str | os.PathLike[str]) -> Path:
    """The JSON sidecar `build-engine` writes beside an engine: `model.plan` -> `model.json`."""
    return Path(plan).with_suffix(".json")


def engine_signature(plan: str | os.PathLike[str]) -> tuple[ModelSignature, dict[str, Any]]:
    """Signature and metadata of a TensorRT engine, read from its sidecar (TensorRT need not be here)."""
    meta_path = engine_meta_path(plan)
    if not Path(plan).is_file():
        raise SpvitError(f"engine '{plan}' does not exist; build it with 'spvit-deploy build-engine'")
    if not meta_path.is_file():
        raise SpvitError(f"engine '{plan}' has no sidecar {meta_path}; rebuild it with 'spvit-deploy build-engine', "
                         f"which writes both")
    try:
        meta = json.loads(meta_path.read_text())
        tensors = [[_sidecar_tensor(t) for t in meta[key]] for key in ("inputs", "outputs")]
        prof = meta["profile"]
        profile = tuple(int(p if isinstance(p, int) else p[0]) for p in (prof["min"], prof["opt"], prof["max"]))
    except json.JSONDecodeError:
        raise SpvitError(f"{meta_path} is not valid JSON; rebuild the engine") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise SpvitError(f"{meta_path} lacks or garbles {e}; it needs inputs/outputs (name, dtype, shape) "
                         f"and profile (min, opt, max)") from None
    return ModelSignature(tuple(tensors[0]), tuple(tensors[1]), profile), meta  # type: ignore[arg-type]


def _sidecar_tensor(t: dict[str, Any]) -> TensorInfo:
    if t["dtype"] not in SIDECAR_DTYPES:
        raise ValueError(f"dtype '{t['dtype']}' (known: {', '.join(SIDECAR_DTYPES)})")
    return TensorInfo(str(t["name"]), SIDECAR_DTYPES[t["dtype"]], tuple(int(d) for d in t["shape"]))


def _signature(model_file: Path) -> ModelSignature:
    return engine_signature(model_file)[0] if model_file.suffix == ".plan" else onnx_signature(model_file)


# ---------------------------------------------------------------- the config message


def default_preferred(max_batch: int, opt: int | None = None) -> tuple[int, ...]:
    """Powers of two from max_batch/8 up to max_batch, plus max_batch and the engine's opt batch."""
    sizes = {p for p in (2**i for i in range(16)) if max_batch / 8 <= p <= max_batch} | {max_batch}
    if opt is not None and 1 <= opt <= max_batch:
        sizes.add(opt)
    return tuple(sorted(sizes))


def build_config(
    name: str,
    backend: str,
    sig: ModelSignature,
    *,
    max_batch: int,
    preferred: Sequence[int],
    max_queue_delay_us: int,
    instances: int,
    kind: str,
    label_output: str | None,
) -> Any:
    """The `inference.ModelConfig` message for one model (batch dimension implicit, as Triton wants)."""
    pb = model_config_pb2()
    cfg = pb.ModelConfig(name=name, platform=BACKENDS[backend][0], max_batch_size=max_batch)
    for t in sig.inputs:
        cfg.input.add(name=t.name, data_type=pb.DataType.Value(t.dtype), dims=list(t.shape[1:]))
    for t in sig.outputs:
        out = cfg.output.add(name=t.name, data_type=pb.DataType.Value(t.dtype), dims=list(t.shape[1:]))
        if t.name == label_output:
            out.label_filename = LABELS_FILE
    cfg.dynamic_batching.preferred_batch_size.extend(preferred)
    cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    cfg.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(KINDS[kind]))
    return cfg


def config_text(cfg: Any, source: str = "") -> str:
    from google.protobuf import text_format

    head = f"# written by spvit-deploy export-triton{f' from {source}' if source else ''}\n"
    return head + text_format.MessageToString(cfg)


def parse_config(path: str | os.PathLike[str]) -> Any:
    """Parse a config.pbtxt into Triton's ModelConfig message, or fail with one line."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    cfg = pb.ModelConfig()
    try:
        text_format.Parse(Path(path).read_text(), cfg)
    except (text_format.ParseError, OSError) as e:
        raise SpvitError(f"{path} does not parse as Triton's ModelConfig: {str(e).splitlines()[0]}") from None
    return cfg


def check_model_dir(path: str | os.PathLike[str], name: str | None = None) -> Any:
    """Parse `path/config.pbtxt` with Triton's ModelConfig and check it against the model file.

    Checks names, data types and dims of every input and output, the batch limits, preferred
    batch sizes, instance kinds and the labels file. Returns the parsed message.
    """
    d = Path(path)
    cfg = parse_config(d / CONFIG_FILE)
    pb = model_config_pb2()
    where = f"{d / CONFIG_FILE}"
    if cfg.name != (name or d.name):
        raise SpvitError(f"{where}: name '{cfg.name}' is not the folder's name '{name or d.name}'")
    platforms = {p: f for p, f in BACKENDS.values()}
    if cfg.platform not in platforms:
        raise SpvitError(f"{where}: platform '{cfg.platform}' is not one of {', '.join(platforms)}")
    model_file = d / VERSION / platforms[cfg.platform]
    if not model_file.is_file():
        raise SpvitError(f"{where}: model file {model_file} is missing")
    sig = _signature(model_file)
    if cfg.max_batch_size < 1:
        raise SpvitError(f"{where}: max_batch_size must be >= 1 for dynamic batching")
    if sig.profile is not None and sig.profile[0] > 1:
        raise SpvitError(f"{where}: the engine profile starts at batch {sig.profile[0]}; Triton batches from 1")
    if sig.profile is not None and cfg.max_batch_size > sig.profile[2]:
        raise SpvitError(f"{where}: max_batch_size {cfg.max_batch_size} exceeds the engine profile max {sig.profile[2]}")
    for kind, declared, actual in (("input", cfg.input, sig.inputs), ("output", cfg.output, sig.outputs)):
        want = {t.name: (t.dtype, list(t.shape[1:])) for t in actual}
        got = {t.name: (pb.DataType.Name(t.data_type), list(t.dims)) for t in declared}
        if want != got:
            raise SpvitError(f"{where}: {kind}s {got} do not match the model file's {want}")
        for t in actual:
            if not t.shape or t.shape[0] != -1:
                raise SpvitError(f"{model_file}: {kind} '{t.name}' has a fixed batch dimension {list(t.shape)}; "
                                 f"re-export it with a dynamic batch")
    bad = [b for b in cfg.dynamic_batching.preferred_batch_size if not 1 <= b <= cfg.max_batch_size]
    if bad:
        raise SpvitError(f"{where}: preferred batch sizes {bad} are outside 1..{cfg.max_batch_size}")
    for g in cfg.instance_group:
        if cfg.platform == BACKENDS["tensorrt"][0] and g.kind == pb.ModelInstanceGroup.KIND_CPU:
            raise SpvitError(f"{where}: TensorRT engines run on GPUs only (instance kind KIND_CPU)")
    for out in cfg.output:
        if out.label_filename:
            labels = d / out.label_filename
            if not labels.is_file():
                raise SpvitError(f"{where}: label file {labels} is missing")
            n = len(labels.read_text().splitlines())
            if n != out.dims[-1]:
                raise SpvitError(f"{where}: {labels} has {n} labels but output '{out.name}' has {out.dims[-1]} classes")
    return cfg


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
        sig = _signature(target)
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


def _export_onnx(model: Any, out: Path, img_size: int) -> None:
    """The one call into the export stage (input `input` (B,3,H,W) fp32, output `logits`, dynamic batch)."""
    import torch

    model = model.eval()
    x = torch.zeros(1, 3, img_size, img_size)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(out), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)


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
                engine_signature(plan)  # fail on a missing engine or sidecar before anything is written
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
        jobs.append((onnx or (lambda p: _export_onnx(r.model, p, spec.img_size)), []))
        if dense and dense_onnx:
            jobs.append((dense_onnx, []))
        elif dense:
            ck = _dense_checkpoint(r, dense_checkpoint)
            note = [] if ck else ["dense weights are random (the run records no dense checkpoint that exists here); "
                                  "pass --dense-checkpoint for real ones (latency is the same)"]
            jobs.append((lambda p: _export_onnx(_dense_model(r, ck), p, spec.img_size), note))
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


def _dense_model(run: Any, checkpoint: str | None) -> Any:
    from ..models import create_dense

    return create_dense(run.spec.model, checkpoint=checkpoint, num_classes=run.spec.num_classes,
                        img_size=run.spec.img_size)
