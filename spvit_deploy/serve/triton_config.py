"""Triton model configs: Triton's own `inference.ModelConfig` message, built from a model file's signature.

Tensor names, data types and dims come from the model file (the ONNX graph, or the TensorRT
engine's JSON sidecar), never typed by hand; `check_model_dir` parses a config.pbtxt back with
Triton's message and compares it with the model file it sits beside.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

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


def model_signature(model_file: Path) -> ModelSignature:
    """The signature of a model.onnx (its graph) or model.plan (its sidecar)."""
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
    sig = model_signature(model_file)
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
