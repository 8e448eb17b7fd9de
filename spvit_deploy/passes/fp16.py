"""fp32 ONNX graph -> mixed fp16 graph for a strongly typed TensorRT network.

Weights and activations become fp16 except LayerNormalization (or its ReduceMean/Sub/Pow/Sqrt/Div
decomposition), Softmax, reductions and the classifier (the Gemm/MatMul feeding a graph output),
which stay fp32. Data-movement ops (Slice, Reshape, Gather, Concat, ...) take the precision of
what consumes them, so a Cast sits only where precision changes, one per tensor and direction.
Graph inputs and outputs stay fp32 unless asked otherwise.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import SpvitError, require
from ..onnx_io import check_model, copy_model_info, infer_shapes, update_metadata

FP32_OPS = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Pow", "Sqrt", "Reciprocal",
})
# ops that only move or select data: they run in whatever precision their consumers want
DATA_OPS = frozenset({
    "Reshape", "Transpose", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze", "Unsqueeze",
    "Flatten", "Concat", "Split", "Expand", "Identity", "Tile", "DepthToSpace", "SpaceToDepth", "Pad",
})
# ops whose float inputs are only looked at for their shape
SHAPE_OPS = frozenset({"Shape", "Size"})
# (op, input index) that must stay fp32 whatever the data precision
FIXED_FP32_INPUTS = frozenset({("Resize", 2), ("Upsample", 1)})
# passed through on the way back from a graph output to the classifier
_HEAD_PASS = DATA_OPS | {"Add", "Cast"}
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class Fp16Report:
    """What the converter did: per-op-type counts of nodes kept fp32 and made fp16, casts added,
    weights converted and how many weight values had to be clipped to the fp16 range."""

    fp32_nodes: dict[str, int]
    fp16_nodes: dict[str, int]
    casts: int
    weights_fp16: int
    weights_fp32: int
    clipped_values: int
    classifier: list[str] = field(default_factory=list)
    io_dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_float(dtype: Any) -> bool:
    return dtype is not None and np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float16))


def _tensor_dtypes(graph: Any) -> dict[str, np.dtype | None]:
    """Element type of every tensor; where shape inference left one out (custom ops), the first input's."""
    gs = require("onnx_graphsurgeon", "onnx")
    types: dict[str, Any] = {}
    for t in graph.tensors().values():
        if isinstance(t, gs.Constant):
            types[t.name] = t.values.dtype
        elif t.dtype is not None:
            types[t.name] = np.dtype(t.dtype) if not isinstance(t.dtype, int) else None
    for node in graph.nodes:
        for i, out in enumerate(node.outputs):
            if types.get(out.name) is not None:
                continue
            if node.op in SHAPE_OPS:
                types[out.name] = np.dtype(np.int64)
            elif node.op == "Cast":
                onnx = require("onnx", "onnx")
                types[out.name] = onnx.helper.tensor_dtype_to_np_dtype(int(node.attrs["to"]))
            elif node.inputs:
                types[out.name] = types.get(node.inputs[0].name)
    return types


def _only(t: Any, ops: set[str], *inputs: Any) -> Any:
    """The single consumer of `t` whose op is in `ops` (and that reads every tensor in `inputs`), else None."""
    found = [n for n in t.outputs if n.op in ops and all(i in n.inputs for i in inputs)]
    return found[0] if len(found) == 1 else None


def _layernorm_decomposition(graph: Any) -> set[int]:
    """ids of the nodes of decomposed LayerNorms: ReduceMean(x) -> Sub(x, mean) -> Pow/Mul (square)
    -> ReduceMean -> [Add(eps)] -> Sqrt -> Div (or Reciprocal + Mul) -> [Mul(gamma) -> Add(beta)]."""
    marked: set[int] = set()
    for r1 in graph.nodes:
        if r1.op != "ReduceMean" or not r1.inputs:
            continue
        x = r1.inputs[0]
        sub = _only(r1.outputs[0], {"Sub"}, x)
        if sub is None:
            continue
        d = sub.outputs[0]
        square = [n for n in d.outputs if n.op == "Pow" or (n.op == "Mul" and list(n.inputs) == [d, d])]
        if len(square) != 1:
            continue
        chain = [r1, sub, square[0]]
        r2 = _only(square[0].outputs[0], {"ReduceMean"})
        if r2 is None:
            continue
        chain.append(r2)
        t = r2.outputs[0]
        eps = _only(t, {"Add"})
        if eps is not None:
            chain.append(eps)
            t = eps.outputs[0]
        sqrt = _only(t, {"Sqrt"})
        if sqrt is None:
            continue
        chain.append(sqrt)
        norm = _only(sqrt.outputs[0], {"Div"}, d)
        if norm is None:
            rec = _only(sqrt.outputs[0], {"Reciprocal"})
            norm = _only(rec.outputs[0], {"Mul"}, d) if rec is not None else None
            if norm is None:
                continue
            chain.append(rec)
        chain.append(norm)
        tail = norm
        for op in ("Mul", "Add"):  # the affine part: a constant second operand
            nxt = _only(tail.outputs[0], {op})
            if nxt is None or len(tail.outputs[0].outputs) != 1 or not any(_is_const(i) for i in nxt.inputs):
                break
            chain.append(nxt)
            tail = nxt
        marked |= {id(n) for n in chain}
    return marked


def _is_const(t: Any) -> bool:
    gs = require("onnx_graphsurgeon", "onnx")
    return isinstance(t, gs.Constant) or bool(t.inputs and t.inputs[0].op == "Constant")


def _classifier(graph: Any) -> list[Any]:
    """The Gemm/MatMul nearest each graph output (walking back through data ops and bias Adds), with
    the nodes walked through."""
    found: list[Any] = []
    for out in graph.outputs:
        path = []
        t = out
        while t.inputs:
            n = t.inputs[0]
            path.append(n)
            if n.op in ("Gemm", "MatMul"):
                found.extend(path)
                break
            if n.op not in _HEAD_PASS:
                break
            data = [i for i in n.inputs if not _is_const(i)]
            if len(data) != 1:
                break
            t = data[0]
    return found


def _assign_precision(graph: Any, types: dict[str, Any], fp32_ops: frozenset[str], keep_classifier_fp32: bool,
                      io_fp16: bool) -> tuple[dict[int, str], list[str]]:
    """node id -> 'fp32' | 'fp16' | 'none' (no float data), deciding data ops from their consumers."""
    fixed32 = {id(n) for n in graph.nodes if n.op in fp32_ops} | _layernorm_decomposition(graph)
    head = _classifier(graph) if keep_classifier_fp32 else []
    fixed32 |= {id(n) for n in head if n.op not in DATA_OPS}
    graph_outputs = {t.name for t in graph.outputs}
    prec: dict[int, str] = {}
    for node in reversed(graph.nodes):  # consumers first (graph is topologically sorted)
        floats = [t for t in (*node.inputs, *node.outputs) if _is_float(types.get(t.name))]
        if not floats or node.op in SHAPE_OPS or node.op == "Cast":
            prec[id(node)] = "none"
        elif id(node) in fixed32:
            prec[id(node)] = "fp32"
        elif node.op in DATA_OPS:
            wants = []
            for t in node.outputs:
                if not _is_float(types.get(t.name)):
                    continue
                wants += [prec.get(id(c), "fp16") for c in t.outputs if prec.get(id(c)) != "none"]
                if t.name in graph_outputs:
                    wants.append("fp16" if io_fp16 else "fp32")
            prec[id(node)] = "fp32" if wants and all(w == "fp32" for w in wants) else "fp16"
        else:
            prec[id(node)] = "fp16"
    return prec, [n.name for n in head]


def _constant_nodes_to_initializers(gs: Any, graph: Any) -> None:
    """Constant nodes become initializers, so their values are converted like any weight."""
    outputs = {t.name for t in graph.outputs}
    for node in [n for n in graph.nodes if n.op == "Constant" and "value" in n.attrs]:
        out = node.outputs[0]
        if out.name in outputs:
            continue
        const = gs.Constant(f"{out.name}_value", np.asarray(node.attrs["value"].values))
        for consumer in list(out.outputs):
            for i, t in enumerate(consumer.inputs):
                if t is out:
                    consumer.inputs[i] = const
        node.outputs.clear()
    graph.cleanup(remove_unused_graph_inputs=False)


def convert_to_fp16(model: Any, *, keep_io_fp32: bool = True, keep_classifier_fp32: bool = True,
                    fp32_ops: Iterable[str] | None = None) -> tuple[Any, Fp16Report]:
    """A mixed-precision copy of the fp32 ONNX `model` (see the module docstring) and a report."""
    onnx = require("onnx", "onnx")
    gs = require("onnx_graphsurgeon", "onnx")
    f16, f32 = np.dtype(np.float16), np.dtype(np.float32)
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise SpvitError("the graph already holds fp16 weights; convert the fp32 export instead")
    graph = gs.import_onnx(infer_shapes(model))
    _constant_nodes_to_initializers(gs, graph)
    graph.toposort()
    types = _tensor_dtypes(graph)
    prec, head = _assign_precision(graph, types, FP32_OPS if fp32_ops is None else frozenset(fp32_ops),
                                   keep_classifier_fp32, io_fp16=not keep_io_fp32)

    current: dict[str, np.dtype] = {}  # float tensor name -> dtype it has in the new graph
    for t in graph.inputs:
        if _is_float(types.get(t.name)):
            current[t.name] = f32 if keep_io_fp32 else f16
            t.dtype = current[t.name]
    casts: dict[tuple[str, str], Any] = {}
    consts: dict[tuple[str, str], Any] = {}
    clipped = 0
    counts: dict[str, dict[str, int]] = {"fp32": defaultdict(int), "fp16": defaultdict(int)}

    def constant_as(t: Any, dt: np.dtype) -> Any:
        nonlocal clipped
        key = (t.name, dt.name)
        if key not in consts:
            if t.values.dtype == dt:
                consts[key] = t
            else:
                v = t.values
                if dt == f16:
                    over = np.abs(v) > FP16_MAX
                    clipped += int(over.sum())
                    v = np.clip(v, -FP16_MAX, FP16_MAX)
                consts[key] = gs.Constant(f"{t.name}_{dt.name}", np.ascontiguousarray(v.astype(dt)))
        return consts[key]

    def cast_as(t: Any, dt: np.dtype) -> Any:
        key = (t.name, dt.name)
        if key not in casts:
            out = gs.Variable(f"{t.name}_to_{'fp16' if dt == f16 else 'fp32'}", dtype=dt, shape=t.shape)
            to = onnx.TensorProto.FLOAT16 if dt == f16 else onnx.TensorProto.FLOAT
            graph.nodes.append(gs.Node("Cast", name=f"{t.name}_cast_{dt.name}", attrs={"to": to},
                                       inputs=[t], outputs=[out]))
            casts[key] = out
        return casts[key]

    for node in list(graph.nodes):
        p = prec.get(id(node), "none")
        if p == "none":
            for t in node.outputs:
                if _is_float(types.get(t.name)):
                    current[t.name] = np.dtype(types[t.name])
            continue
        counts[p][node.op] += 1
        want = f16 if p == "fp16" else f32
        for i, t in enumerate(node.inputs):
            if not _is_float(types.get(t.name)):
                continue
            dt = f32 if (node.op, i) in FIXED_FP32_INPUTS else want
            if isinstance(t, gs.Constant):
                node.inputs[i] = constant_as(t, dt)
            elif current.get(t.name, f32) != dt:
                node.inputs[i] = cast_as(t, dt)
        for t in node.outputs:
            if _is_float(types.get(t.name)):
                t.dtype = want
                current[t.name] = want

    out_dt = f32 if keep_io_fp32 else f16
    for k, t in enumerate(graph.outputs):
        if _is_float(types.get(t.name)) and current.get(t.name) != out_dt:
            inner = gs.Variable(f"{t.name}_{current[t.name].name}", dtype=current[t.name], shape=t.shape)
            producer = t.inputs[0]
            producer.outputs[producer.outputs.index(t)] = inner
            for c in list(t.outputs):
                c.inputs[c.inputs.index(t)] = inner
            to = onnx.TensorProto.FLOAT if out_dt == f32 else onnx.TensorProto.FLOAT16
            graph.nodes.append(gs.Node("Cast", name=f"{t.name}_cast_out", attrs={"to": to}, inputs=[inner],
                                       outputs=[t]))
            t.dtype = out_dt
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    proto = copy_model_info(model, gs.export_onnx(graph))
    inits = [t for t in proto.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    report = Fp16Report(
        fp32_nodes=dict(sorted(counts["fp32"].items())), fp16_nodes=dict(sorted(counts["fp16"].items())),
        casts=sum(1 for n in proto.graph.node if n.op_type == "Cast"),
        weights_fp16=sum(1 for t in inits if t.data_type == onnx.TensorProto.FLOAT16),
        weights_fp32=sum(1 for t in inits if t.data_type == onnx.TensorProto.FLOAT),
        clipped_values=clipped, classifier=head, io_dtype=out_dt.name,
    )
    update_metadata(proto, precision="fp16", fp16={k: v for k, v in report.to_dict().items() if k != "classifier"})
    check_model(proto, "the fp16 graph")
    return proto, report


def graph_precision(model: Any) -> str:
    """'fp16' when the graph holds fp16 weights (our converter's output), else 'fp32'."""
    onnx = require("onnx", "onnx")
    return "fp16" if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer) else "fp32"
