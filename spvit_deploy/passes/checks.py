"""What the engine passes' graphs are checked with: a reference session (onnx.reference with the
plugin's reference op) and the structural checks the verify stages and tests run on the graphs
`build-engine` receives. ONNX files and metadata: `spvit_deploy.onnx_io`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import require
from ..onnx_io import get_metadata, infer_shapes
from .plugins import PLUGIN_OP, reference_ops

FP32_ONLY = ("LayerNormalization", "Softmax")  # never computed in fp16 by our graphs


# ------------------------------------------------------------------------------ execution


def reference_session(proto: Any) -> Any:
    """`onnx.reference.ReferenceEvaluator` that also runs the plugin node (numpy reference op)."""
    require("onnx", "onnx")
    from onnx.reference import ReferenceEvaluator

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
    types: dict[str, int] = {}
    g = infer_shapes(proto).graph
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
