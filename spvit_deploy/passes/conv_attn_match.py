"""The plugin pass's matcher: where an ONNX graph (onnx-graphsurgeon) holds the exporter's conv-attention
subgraphs, the patterns listed in `plugins.py`'s docstring (class-token tokens or a Swin map; kxk Conv or
a 1x1 conv as MatMul + Add), with the weights the plugin node takes."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import require

_BIG = 2**62  # a Slice end meaning "to the end"


def _values(t: Any) -> np.ndarray | None:
    """The values of a constant tensor (initializer or Constant node), else None."""
    gs = require("onnx_graphsurgeon", "onnx")
    if isinstance(t, gs.Constant):
        return np.asarray(t.values)
    if t.inputs and t.inputs[0].op == "Constant":
        return np.asarray(t.inputs[0].attrs["value"].values)
    return None


def _ints(t: Any) -> list[int] | None:
    v = _values(t)
    return None if v is None else [int(x) for x in v.reshape(-1)]


def _producer(t: Any, op: str) -> Any:
    """The node producing `t` if it is an `op` whose output has no other consumer, else None."""
    if len(t.inputs) != 1 or t.inputs[0].op != op or len(t.outputs) != 1:
        return None
    return t.inputs[0]


def _slice_range(node: Any) -> tuple[int, int] | None:
    """(start, end) of a Slice along axis 1 with step 1, else None."""
    if node is None or node.op != "Slice" or len(node.inputs) < 3:
        return None
    starts, ends = _ints(node.inputs[1]), _ints(node.inputs[2])
    axes = _ints(node.inputs[3]) if len(node.inputs) > 3 else [0]
    steps = _ints(node.inputs[4]) if len(node.inputs) > 4 else [1]
    if None in (starts, ends, axes, steps) or len(starts) != 1 or axes not in ([1], [-2]) or steps != [1]:
        return None
    return starts[0], ends[0]


def _perm(node: Any) -> list[int] | None:
    return list(node.attrs.get("perm", [])) if node is not None and node.op == "Transpose" else None


def _static_dims(t: Any, rank: int) -> list[int | None] | None:
    shape = t.shape
    if shape is None or len(shape) != rank:
        return None
    return [d if isinstance(d, int) and d >= 0 else None for d in shape]


def _reshape_target(node: Any, rank: int) -> list[int | None] | None:
    """The static target shape of a Reshape (constant shape input, else the inferred output shape)."""
    target = _ints(node.inputs[1])
    if target is not None and len(target) == rank:
        return [v if v > 0 else None for v in target]
    return _static_dims(node.outputs[0], rank)


def _image_from_patches(x: Any) -> tuple[Any, tuple[int, int]] | None:
    """(the Slice(u, 1:) node, grid) when `x`, a Conv input, is the patch tokens as an NCHW image:
    Reshape(B, gh, gw, C) -> Transpose(0,3,1,2) (NHWC tokens), or Transpose(0,2,1) -> Reshape(B, C, gh, gw)."""
    first = _producer(x, "Transpose")
    if first is not None and _perm(first) == [0, 3, 1, 2]:
        r = _producer(first.inputs[0], "Reshape")
        dims = _reshape_target(r, 4) if r is not None else None
        if dims is None or None in dims[1:3]:
            return None
        sp = _producer(r.inputs[0], "Slice")
        return (sp, (dims[1], dims[2])) if sp is not None else None
    r = _producer(x, "Reshape")
    t = _producer(r.inputs[0], "Transpose") if r is not None else None
    if t is None or _perm(t) != [0, 2, 1]:
        return None
    dims = _reshape_target(r, 4)
    if dims is None or None in dims[2:4]:
        return None
    sp = _producer(t.inputs[0], "Slice")
    return (sp, (dims[2], dims[3])) if sp is not None else None


def _tokens_from_image(y: Any) -> Any:
    """The tensor holding `y` (B, d, gh, gw) as (B, N, d) tokens: Transpose(0,2,3,1) -> Reshape, or
    Reshape/Flatten(axis 2) -> Transpose(0,2,1); None if it is used otherwise."""
    t = _only_consumer(y, "Transpose")
    if t is not None and _perm(t) == [0, 2, 3, 1]:
        r = _only_consumer(t.outputs[0], "Reshape")
        return r.outputs[0] if r is not None else None
    r = _only_consumer(y, ("Reshape", "Flatten"))
    if r is None or (r.op == "Flatten" and int(r.attrs.get("axis", 1)) != 2):
        return None
    t = _only_consumer(r.outputs[0], "Transpose")
    return t.outputs[0] if t is not None and _perm(t) == [0, 2, 1] else None


def _linear(x: Any, ops: tuple[str, ...] = ("MatMul",)) -> tuple[Any, np.ndarray, np.ndarray | None] | None:
    """x -> MatMul(W const) [-> Add(b const)]: (last node, W, b or None)."""
    mm = _only_consumer(x, ops)
    if mm is None or mm.inputs[0] is not x:
        return None
    w = _values(mm.inputs[1])
    if w is None or w.ndim != 2:
        return None
    add = _only_consumer(mm.outputs[0], "Add")
    if add is not None:
        other = [i for i in add.inputs if i is not mm.outputs[0]]
        b = _values(other[0]) if len(other) == 1 else None
        if b is not None and b.size == w.shape[1]:
            return add, w, b.reshape(-1)
    return mm, w, None


def _linear_conv(conv: Any) -> tuple[Any, np.ndarray, np.ndarray] | None:
    """A 1x1 conv exported as a Linear over the channels, ending at `conv` (MatMul [-> Add]):
    (the MatMul, weight as (d, C, 1, 1), bias (d,)), else None."""
    mm = conv if conv.op == "MatMul" else (_producer(conv.inputs[0], "MatMul") if conv.op == "Add" else None)
    wt = _values(mm.inputs[1]) if mm is not None and len(mm.inputs) == 2 else None
    if wt is None or wt.ndim != 2:
        return None
    c, d = wt.shape
    bias = np.zeros(d, wt.dtype)
    if conv.op == "Add":
        other = [i for i in conv.inputs if i is not mm.outputs[0]]
        bias = _values(other[0]) if len(other) == 1 else None
        if bias is None or bias.size != d:
            return None
    return mm, np.ascontiguousarray(wt.T).reshape(d, c, 1, 1), bias


def _map_grid(u: Any) -> tuple[int, int] | None:
    """(gh, gw) of a (B, gh, gw, C) map with static gh, gw, C, else None."""
    dims = _static_dims(u, 4)
    return (dims[1], dims[2]) if dims and None not in dims[1:] else None


def _match_map(relu: Any, conv: Any, graph_outputs: set[str]) -> dict[str, Any] | None:
    """The conv block of a class-token-free model around `relu` (`plugins.py`'s docstring), or None."""
    pre = relu.inputs[0]
    if conv.op == "Conv":
        w = _values(conv.inputs[1]) if len(conv.inputs) > 1 else None
        t = _producer(conv.inputs[0], "Transpose")
        if w is None or w.ndim != 4 or t is None or _perm(t) != [0, 3, 1, 2]:
            return None
        d, c, k, _ = w.shape
        a = conv.attrs
        if (w.shape[2] != w.shape[3] or k not in (1, 3) or list(a.get("strides", [1, 1])) != [1, 1]
                or list(a.get("dilations", [1, 1])) != [1, 1] or int(a.get("group", 1)) != 1
                or list(a.get("pads", [0] * 4)) != [k // 2] * 4 or a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")):
            return None
        bias = _values(conv.inputs[2]) if len(conv.inputs) > 2 else np.zeros(d, w.dtype)
        u = t.inputs[0]
        back = _only_consumer(relu.outputs[0], "Transpose")
        if bias is None or back is None or _perm(back) != [0, 2, 3, 1]:
            return None
        tokens, inner = back.outputs[0], [t.outputs[0], conv.outputs[0], relu.outputs[0]]
    else:
        found = _linear_conv(conv)
        if found is None:
            return None
        mm, w, bias = found
        d, c, k, u = w.shape[0], w.shape[1], 1, mm.inputs[0]
        tokens, inner = relu.outputs[0], [pre, relu.outputs[0]]
    grid = _map_grid(u)
    proj = _linear(tokens)
    if grid is None or _static_dims(u, 4)[3] != c or proj is None or proj[1].shape != (d, c):
        return None
    last, pw, pb = proj
    if any(x.name in graph_outputs for x in inner):
        return None
    return {"u": u, "out": last.outputs[0], "tail": last, "w": w, "b": bias.reshape(d), "pw": pw,
            "pb": np.zeros(c, pw.dtype) if pb is None else pb, "k": k, "grid": tuple(int(g) for g in grid),
            "c": c, "d": d, "weight_name": _weight_name(conv if conv.op == "Conv" else mm)}


def _patch_slice_ok(sp: Any, n: int | None) -> bool:
    rng = _slice_range(sp)
    return rng is not None and rng[0] == 1 and (rng[1] >= _BIG // 4 or rng[1] == -1 + 2**63 or rng[1] == 1 + (n or -9))


def match_conv_attn(relu: Any, graph_outputs: set[str], default_grid: tuple[int, int] | None) -> dict[str, Any] | None:
    """The conv block around `relu`, or None. The conv is a kxk Conv on the patch image, or (1x1) a
    MatMul + Add on the patch tokens; then projection MatMul [+ Add] and Concat with the class token."""
    pre = relu.inputs[0]
    conv = pre.inputs[0] if len(pre.inputs) == 1 else None
    if conv is None or len(pre.outputs) != 1:
        return None
    return _match_tokens(relu, conv, graph_outputs, default_grid) or _match_map(relu, conv, graph_outputs)


def _match_tokens(relu: Any, conv: Any, graph_outputs: set[str], default_grid: tuple[int, int] | None) -> dict[str, Any] | None:
    """A class-token ViT's conv block (`plugins.py`'s docstring), or None."""
    pre = relu.inputs[0]
    if conv.op == "Conv":
        w = _values(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if w is None or w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] not in (1, 3):
            return None
        d, c, k, _ = w.shape
        a = conv.attrs
        if (list(a.get("strides", [1, 1])) != [1, 1] or list(a.get("dilations", [1, 1])) != [1, 1]
                or int(a.get("group", 1)) != 1 or list(a.get("pads", [0] * 4)) != [k // 2] * 4
                or a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")):
            return None
        bias = _values(conv.inputs[2]) if len(conv.inputs) > 2 else np.zeros(d, w.dtype)
        found = _image_from_patches(conv.inputs[0])
        if bias is None or found is None:
            return None
        sp, grid = found
        tokens = _tokens_from_image(relu.outputs[0])
        inner = [conv.outputs[0], relu.outputs[0]]
    else:  # a 1x1 conv exported as a Linear over the channels, on the patch tokens (Slice -> MatMul
        # [-> Add] -> Relu) or on every token with the class token's row dropped after the Relu
        found = _linear_conv(conv)
        if found is None:
            return None
        mm, w, bias = found
        d, c, k = w.shape[0], w.shape[1], 1
        sp = _producer(mm.inputs[0], "Slice")
        if sp is not None:
            tokens, n = relu.outputs[0], _static_dims(sp.outputs[0], 3)
            inner = [pre, relu.outputs[0]]
        else:
            sp = _only_consumer(relu.outputs[0], "Slice")
            if sp is None:
                return None
            tokens, n = sp.outputs[0], _static_dims(sp.outputs[0], 3)
            inner = [pre, relu.outputs[0], tokens]
        n_tok = n[1] if n is not None else None
        grid = default_grid if default_grid and n_tok in (None, default_grid[0] * default_grid[1]) else None
        if grid is None and n_tok:
            grid = (1, n_tok)
        if grid is None:
            return None
    u = sp.inputs[0] if sp.inputs[0] is not relu.outputs[0] else mm.inputs[0]
    if tokens is None or not _patch_slice_ok(sp, grid[0] * grid[1]):
        return None
    proj = _linear(tokens)
    if proj is None or proj[1].shape != (d, c):
        return None
    last, pw, pb = proj
    pb = np.zeros(c, pw.dtype) if pb is None else pb
    cat = _only_consumer(last.outputs[0], "Concat")
    if cat is None or int(cat.attrs.get("axis", 0)) not in (1, -2) or len(cat.inputs) != 2:
        return None
    if cat.inputs[1] is not last.outputs[0]:
        return None
    sc = _producer(cat.inputs[0], "Slice")
    if sc is None or sc.inputs[0] is not u or _slice_range(sc) != (0, 1):
        return None
    if any(t.name in graph_outputs for t in (*inner, last.outputs[0])):
        return None
    return {"u": u, "out": cat.outputs[0], "tail": cat, "w": w, "b": bias.reshape(d), "pw": pw, "pb": pb,
            "k": k, "grid": tuple(int(g) for g in grid), "c": c, "d": d, "weight_name": _weight_name(conv)}


def _weight_name(node: Any) -> str:
    for t in node.inputs[1:]:
        if "." in t.name:
            return t.name
    return node.name


def patch_grid(graph: Any) -> tuple[int, int] | None:
    """The patch grid, from the first Conv's (the patch embedding's) static output shape."""
    for n in graph.nodes:
        if n.op == "Conv":
            dims = _static_dims(n.outputs[0], 4)
            return (dims[2], dims[3]) if dims and dims[2] and dims[3] else None
    return None


def _only_consumer(t: Any, ops: str | tuple[str, ...]) -> Any:
    ops = (ops,) if isinstance(ops, str) else ops
    if len(t.outputs) != 1 or t.outputs[0].op not in ops:
        return None
    return t.outputs[0]
