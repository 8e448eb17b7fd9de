"""The plugin pass: each conv block's attention subgraph -> one `SpvitConvAttn` node for TensorRT,
and that node's reference op for `onnx.reference` (the CPU proxy of the plugin: a wrapper of the oracle,
`spvit_kernels.conv_attn_reference`, whose module docstring says what the op is called where).

Matched (what the exporter emits for `plain.ConvAttention`, fp32 or fp16 alike):
    u -> Slice(1:, axis 1) -> Reshape(B, gh, gw, C) -> Transpose(0,3,1,2)      (NHWC tokens; or
         Transpose(0,2,1) -> Reshape(B, C, gh, gw)) -> Conv kxk (pad k//2) -> Relu
      -> Transpose(0,2,3,1) -> Reshape(B, N, d)   (or Reshape/Flatten -> Transpose(0,2,1))
      -> MatMul(W (d, C)) [-> Add(b)];   a 1x1 conv may come as Slice -> MatMul -> Add -> Relu, or
         as u -> MatMul -> Add -> Relu -> Slice(1:, axis 1) (on every token, class row dropped after)
    u -> Slice(0:1, axis 1);   both -> Concat(axis 1)
or, in a model without a class token (Swin, `families/swin.py`'s `MapConvAttention`), on the whole
(B, gh, gw, C) map u:
    u -> Transpose(0,3,1,2) -> Conv kxk -> Relu -> Transpose(0,2,3,1) -> MatMul(W) [-> Add(b)], or
    u -> MatMul -> Add -> Relu -> MatMul(W) [-> Add(b)]   (1x1)
Replaced by SpvitConvAttn(u, conv weight packed (k, k, C, d), conv bias (d,), proj weight (C, d),
proj bias (C,)) in domain "spvit", attributes plugin_namespace, plugin_version, kernel_size,
grid_h, grid_w: the inputs and layout `spvit_kernels` expects, the op name TensorRT looks up; and
`aot=1`, so any builder (trtexec, Polygraphy) picks the ahead-of-time kernel, not the Python one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import SpvitError, require
from ..onnx_io import check_model, copy_model_info, infer_shapes, update_metadata
from .conv_attn_match import match_conv_attn, patch_grid

PLUGIN_OP = "SpvitConvAttn"
PLUGIN_DOMAIN = "spvit"
PLUGIN_NAMESPACE = "spvit"
PLUGIN_VERSION = "1"
PLUGIN_NAME = f"{PLUGIN_NAMESPACE}::{PLUGIN_OP}"
PLUGIN_ATTRS = ("kernel_size", "grid_h", "grid_w")  # the plugin's fields, in its register() order


@dataclass(frozen=True)
class PluginReport:
    """One row per replaced conv block: node name, kernel size, grid, channels, conv width."""

    blocks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.blocks)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, **asdict(self)}


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """(d, C, k, k) conv weight -> contiguous (k, k, C, d), the layout `spvit_kernels` loads."""
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def insert_conv_attn_plugins(model: Any, kernel_sizes: tuple[int, ...] = (1, 3)) -> tuple[Any, PluginReport]:
    """A copy of `model` with every conv block's attention subgraph (of a kernel size in `kernel_sizes`)
    replaced by one plugin node."""
    onnx = require("onnx", "onnx")
    gs = require("onnx_graphsurgeon", "onnx")
    if any(n.op_type == PLUGIN_OP for n in model.graph.node):
        raise SpvitError("the graph already has plugin nodes; give the export without --plugins")
    graph = gs.import_onnx(infer_shapes(model))
    outputs = {t.name for t in graph.outputs}
    grid = patch_grid(graph)
    blocks = []
    for relu in [n for n in graph.nodes if n.op == "Relu"]:
        m = match_conv_attn(relu, outputs, grid)
        if m is None or m["k"] not in kernel_sizes:
            continue
        dt = m["w"].dtype
        name = f"spvit_conv_attn_{len(blocks)}"
        prefix = m["weight_name"].removesuffix(".weight").removesuffix(".bias").removesuffix(".conv")
        inputs = [
            m["u"],
            gs.Constant(f"{prefix}.plugin.conv_weight_packed", pack_conv_weight(m["w"])),
            gs.Constant(f"{prefix}.plugin.conv_bias", np.ascontiguousarray(m["b"].astype(dt))),
            gs.Constant(f"{prefix}.plugin.proj_weight", np.ascontiguousarray(m["pw"].T.astype(dt))),
            gs.Constant(f"{prefix}.plugin.proj_bias", np.ascontiguousarray(m["pb"].astype(dt))),
        ]
        m["tail"].outputs.clear()  # the old subgraph is now dead; cleanup() removes it
        graph.nodes.append(gs.Node(
            PLUGIN_OP, name=name, domain=PLUGIN_DOMAIN, inputs=inputs, outputs=[m["out"]],
            attrs={"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION, "aot": 1,
                   "kernel_size": int(m["k"]), "grid_h": int(m["grid"][0]), "grid_w": int(m["grid"][1])},
        ))
        blocks.append({"node": name, "source": prefix, "kernel_size": int(m["k"]), "grid": list(m["grid"]),
                       "channels": int(m["c"]), "conv_channels": int(m["d"]), "dtype": dt.name})
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    if not any(getattr(o, "domain", None) == PLUGIN_DOMAIN for o in graph.import_domains or []) and blocks:
        graph.import_domains = [*(graph.import_domains or []), onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1)]
    proto = copy_model_info(model, gs.export_onnx(graph))
    report = PluginReport(blocks)
    update_metadata(proto, plugins={"name": PLUGIN_NAME, "version": PLUGIN_VERSION, "count": report.count,
                                    "kernel_sizes": list(kernel_sizes), "blocks": blocks})
    check_model(proto, "the plugin graph")
    return proto, report


# ------------------------------------------------------------------------------ reference op


def conv_attn_numpy(u: np.ndarray, conv_weight_packed: np.ndarray, conv_bias: np.ndarray, proj_weight: np.ndarray,
                    proj_bias: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The plugin node's op on its inputs: `spvit_kernels.conv_attn_reference`, the oracle, with the conv
    weight packed (k, k, C, d); (B, 1+N, C) -> (B, 1+N, C), or a map without a class token
    (B, gh, gw, C) -> (B, gh, gw, C). Computes in fp32 and rounds the hidden tokens and the output to u's
    dtype, as the kernel does; the class token is copied."""
    import torch
    from spvit_kernels.reference import conv_attn_reference

    gh, gw = grid
    if u.ndim == 4 and u.shape[1:3] != (gh, gw):
        raise ValueError(f"a {u.shape[1:3]} map is not the {gh}x{gw} grid")
    if u.ndim == 3 and u.shape[1] - gh * gw not in (0, 1):
        raise ValueError(f"{u.shape[1]} tokens != {gh}*{gw} (a map) or 1 + {gh}*{gw} (class token + grid)")
    f32 = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731  (a copy: writable)
    out = conv_attn_reference(f32(u), f32(conv_weight_packed).permute(3, 2, 0, 1), f32(conv_bias), f32(proj_weight),
                              f32(proj_bias), grid, hidden_dtype=torch.from_numpy(np.zeros(0, u.dtype)).dtype)
    return out.numpy().astype(u.dtype)


def set_plugin_aot(proto: Any, aot: bool) -> int:
    """Mark every plugin node of `proto` (in place) for the AOT implementation (`aot=1`, the node attribute
    TensorRT's ONNX parser reads, as its quickly_deployable_plugins sample documents) or, for JIT, drop the
    attribute (TensorRT before 10.9 does not know it); returns how many nodes changed."""
    onnx = require("onnx", "onnx")
    changed = 0
    for node in proto.graph.node:
        if node.op_type != PLUGIN_OP:
            continue
        current = [a for a in node.attribute if a.name == "aot"]
        if aot and not (current and current[0].i == 1):
            for a in current:
                node.attribute.remove(a)
            node.attribute.append(onnx.helper.make_attribute("aot", 1))
            changed += 1
        elif not aot and current:
            for a in current:
                node.attribute.remove(a)
            changed += 1
    return changed


def reference_ops() -> list[type]:
    """The `onnx.reference` implementation of the plugin node (pass as `new_ops=`)."""
    require("onnx", "onnx")
    from onnx.reference.op_run import OpRun

    class SpvitConvAttn(OpRun):
        op_domain = PLUGIN_DOMAIN

        def _run(self, u, conv_weight, conv_bias, proj_weight, proj_bias, kernel_size=None, grid_h=None,  # type: ignore[override]
                 grid_w=None, plugin_namespace=None, plugin_version=None, aot=None):
            if conv_weight.shape[0] != kernel_size:
                raise ValueError(f"packed conv weight {conv_weight.shape} does not match kernel_size {kernel_size}")
            return (conv_attn_numpy(u, conv_weight, conv_bias, proj_weight, proj_bias, (grid_h, grid_w)),)

    SpvitConvAttn.__name__ = PLUGIN_OP
    return [SpvitConvAttn]
