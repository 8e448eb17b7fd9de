"""ONNX graph helpers shared by the engine passes: load/save, `spvit.*` metadata, a reference
session (onnx.reference with the plugin's reference op) and the structural checks the verify
stages and tests run on the graphs `build-engine` receives.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpvitError, require

META_PREFIX = "spvit."  # the export stage's metadata prefix (values are JSON)
FP32_ONLY = ("LayerNormalization", "Softmax")  # never computed in fp16 by our graphs
MAX_PROTO_BYTES = 2**31 - 2**24


def load_model(path: str | os.PathLike[str]) -> Any:
    """An ONNX ModelProto from `path`, with a one-line error for a missing or damaged file."""
    onnx = require("onnx", "onnx")
    p = Path(path)
    if not p.is_file():
        raise SpvitError(f"ONNX file '{p}' does not exist; export one with 'spvit-deploy export'")
    try:
        return onnx.load(str(p))
    except Exception as e:
        raise SpvitError(f"cannot read '{p}' as ONNX ({type(e).__name__}); the file is damaged or not ONNX") from None


def save_model(proto: Any, path: str | os.PathLike[str]) -> Path:
    """Write `proto` atomically (single file; graphs over protobuf's 2 GiB are refused)."""
    onnx = require("onnx", "onnx")
    from .._io import atomic_path

    if proto.ByteSize() > MAX_PROTO_BYTES:
        raise SpvitError("the graph exceeds ONNX's 2 GiB single-file limit")
    target = Path(path)
    if target.is_dir():
        raise SpvitError(f"'{target}' is a folder; give a file name such as model.onnx")
    with atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_metadata(proto: Any) -> dict[str, Any]:
    """The `spvit.*` metadata of a ModelProto, JSON-decoded, without the prefix."""
    out: dict[str, Any] = {}
    for p in proto.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[len(META_PREFIX):]] = p.value
    return out


def update_metadata(proto: Any, **values: Any) -> None:
    """Set `spvit.<key>` metadata entries (JSON values), keeping every other entry."""
    keys = {META_PREFIX + k for k in values}
    keep = [p for p in proto.metadata_props if p.key not in keys]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, json.dumps(v)


def copy_model_info(src: Any, dst: Any) -> Any:
    """Carry metadata, producer and doc string from `src` to a rebuilt `dst`."""
    dst.producer_name = src.producer_name or "spvit-deploy"
    dst.producer_version = src.producer_version
    dst.doc_string = src.doc_string
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    return dst


# ------------------------------------------------------------------------------ execution


def reference_session(proto: Any) -> Any:
    """`onnx.reference.ReferenceEvaluator` that also runs the plugin node (numpy reference op)."""
    require("onnx", "onnx")
    from onnx.reference import ReferenceEvaluator

    from .plugins import reference_ops

    return ReferenceEvaluator(proto, new_ops=reference_ops())


def run_reference(proto: Any, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """The graph's first output on `x` (B, 3, H, W) fp32, in chunks of `batch`, as float32."""
    sess = reference_session(proto)
    name = proto.graph.input[0].name
    outs = [sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


# ------------------------------------------------------------------------------ checks


@dataclass(frozen=True)
class GraphChecks:
    """What the builder will see: node counts, precision of the sensitive ops, batch axes."""

    plugin_nodes: int
    conv_blocks: int | None  # conv blocks the graph's spec metadata names (None: no spec)
    fp16_sensitive_ops: list[str]  # LayerNormalization/Softmax nodes computing in fp16 (should be none)
    batch_dynamic: bool  # every graph input and output has a symbolic first axis
    initializer_dtypes: dict[str, int]
    io: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        blocks_ok = self.conv_blocks is None or self.plugin_nodes in (0, self.conv_blocks)
        return blocks_ok and not self.fp16_sensitive_ops and self.batch_dynamic

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _elem_types(proto: Any) -> dict[str, int]:
    onnx = require("onnx", "onnx")
    types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:
        inferred = proto
    g = inferred.graph
    for vi in (*g.input, *g.output, *g.value_info):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    return types


def io_signature(proto: Any) -> list[dict[str, Any]]:
    """[{name, kind, dtype, shape}] of the graph inputs and outputs (symbolic dims as their names)."""
    onnx = require("onnx", "onnx")
    rows = []
    for kind, vis in (("input", proto.graph.input), ("output", proto.graph.output)):
        for vi in vis:
            tt = vi.type.tensor_type
            dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in tt.shape.dim]
            rows.append({"name": vi.name, "kind": kind, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name,
                         "shape": dims})
    return rows


def conv_blocks_in_spec(proto: Any) -> int | None:
    """How many conv blocks the graph's `spvit.spec` metadata names (None without a spec)."""
    spec = get_metadata(proto).get("spec")
    if not isinstance(spec, dict) or "blocks" not in spec:
        return None
    return sum(1 for b in spec["blocks"] if str(b.get("attn", "")).startswith("conv"))


def check_graph(proto: Any) -> GraphChecks:
    """Structural checks on a graph for the builder (see `GraphChecks`)."""
    onnx = require("onnx", "onnx")
    from .plugins import PLUGIN_OP

    types = _elem_types(proto)
    fp16 = onnx.TensorProto.FLOAT16
    sensitive = [f"{n.op_type}:{n.name}" for n in proto.graph.node
                 if n.op_type in FP32_ONLY and types.get(n.input[0]) == fp16]
    io = io_signature(proto)
    dynamic = all(r["shape"] and not isinstance(r["shape"][0], int) for r in io)
    dtypes: dict[str, int] = {}
    for t in proto.graph.initializer:
        name = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
        dtypes[name] = dtypes.get(name, 0) + 1
    return GraphChecks(
        plugin_nodes=sum(1 for n in proto.graph.node if n.op_type == PLUGIN_OP),
        conv_blocks=conv_blocks_in_spec(proto), fp16_sensitive_ops=sensitive, batch_dynamic=dynamic,
        initializer_dtypes=dtypes, io=io,
    )
