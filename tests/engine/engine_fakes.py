"""Stand-ins for `tensorrt` and `tensorrt.plugin` (neither exists here): just enough of the documented
API for the builder, the runner and the plugin definitions, with the checks the real modules make
(QDP schema validation as in tensorrt/plugin/_validate.py, read from TensorRT's sources).

`FakeTRT` is a module-like object: `sys.modules["tensorrt"] = FakeTRT()`. Its ONNX parser reads the
graph with `onnx` and, for plugin nodes, does what TensorRT does at build time: look the creator up by
op type + plugin_namespace, pick AOT or JIT as tensorrt/plugin/_lib.py `create_plugin` does (the node's
`aot` attribute first, then the network's PREFER_*_PYTHON_PLUGINS flag, an error when both
implementations exist and nothing says which), build the fields from the node's attributes in register
order, call the register function with the dtype and shape of the tensor that really feeds the node
(ONNX shape inference upstream), autotune, and the AOT implementation once per advertised tactic.

Enum values are TensorRT's own (NvInfer.h): NetworkDefinitionCreationFlag is EXPLICIT_BATCH=0,
STRONGLY_TYPED=1, PREFER_JIT=2, PREFER_AOT=3 in 10.x and STRONGLY_TYPED=0, PREFER_JIT=1, PREFER_AOT=2 in 11.
`SymInt32` refuses anything but a Python int or a symbolic expression (the real one mishandles numpy
integers). A context's captured graph goes stale once the context runs other shapes or another profile;
replaying a stale graph raises, as the wrong results it gives on a GPU would not.
"""
from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np


# ------------------------------------------------------------------------------ tensorrt.plugin


class SymExpr:
    """A symbolic int: a constant, or an input dimension (resolved later by TensorRT)."""

    def __init__(self, value: Any = None, name: str | None = None) -> None:
        self.value, self.name = value, name

    def __repr__(self) -> str:
        return f"Sym({self.name or self.value})"


class SymExprs(list):
    @classmethod
    def from_tuple(cls, items: Any) -> "SymExprs":
        return cls(items)


class SymIntExprs(SymExprs):
    pass


class SymInt32(SymExpr):
    def __init__(self, value: Any) -> None:
        if isinstance(value, float):
            raise ValueError("Float symbolic expressions are not supported")
        if isinstance(value, SymExpr):
            super().__init__(value.value, value.name)
        elif type(value) is int:
            super().__init__(value)
        else:
            raise TypeError(f"SymInt32 takes a Python int or a symbolic expression, not {type(value).__name__}")


class ShapeExpr(SymInt32):
    def __init__(self, value: Any, name: str | None = None) -> None:
        SymExpr.__init__(self, value, name)


class TensorDesc:
    def __init__(self, dtype: Any, shape: tuple[int, ...], dyn_names: tuple[str | None, ...] | None = None) -> None:
        self.dtype = dtype
        self.shape = shape
        names = dyn_names or (None,) * len(shape)
        self.shape_expr = [ShapeExpr(d if d >= 0 else None, n) for d, n in zip(shape, names)]

    def like(self) -> "TensorDesc":
        return TensorDesc(self.dtype, self.shape, tuple(e.name for e in self.shape_expr))

    @property
    def ndim(self) -> int:
        return len(self.shape)


class Tensor:  # only for annotations
    pass


class KernelLaunchParams:
    FIELDS = ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")

    def __init__(self) -> None:
        for f in self.FIELDS:
            self.__dict__[f] = SymInt32(0 if f == "shared_mem" else 1)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"KernelLaunchParams object has no attribute '{name}'")
        self.__dict__[name] = SymInt32(value)


class AutoTuneCombination:
    def __init__(self, io_types: str | None = None, layouts: str | None = None, tactics: Any = None) -> None:
        self.io_types = [s.strip() for s in (io_types or "").split(",") if s.strip()]
        self.layouts = layouts or "LINEAR"
        self.tactics = list(tactics) if tactics is not None else [0]
        if any(t < 1 for t in self.tactics if tactics is not None):
            raise ValueError("custom tactics must be positive")


SERIALIZABLE = (int, float, bytes, bool, str)


@dataclass
class PluginDef:
    name: str
    tensor_names: list[str]
    attrs: dict[str, type]
    num_outputs: int
    register_fn: Any
    autotune_fn: Any = None
    impl_fn: Any = None
    aot_impl_fn: Any = None
    impl_attrs: list[str] = field(default_factory=list)
    autotune_attrs: list[str] = field(default_factory=list)


class FakeTRTP(types.ModuleType):
    """`tensorrt.plugin` with the AOT API (10.9+); `aot=False` makes the 10.6-10.8 flavour."""

    def __init__(self, aot: bool = True) -> None:
        super().__init__("tensorrt.plugin")
        self.TensorDesc, self.Tensor, self.KernelLaunchParams = TensorDesc, Tensor, KernelLaunchParams
        self.SymExprs, self.SymIntExprs, self.SymInt32 = SymExprs, SymIntExprs, SymInt32
        self.AutoTuneCombination = AutoTuneCombination
        self.registry: dict[str, PluginDef] = {}
        self._no_aot = not aot

    def __getattribute__(self, name: str) -> Any:
        if name == "aot_impl" and object.__getattribute__(self, "_no_aot"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # register ---------------------------------------------------------------
    def register(self, plugin_id: str) -> Any:
        ns, _, name = plugin_id.partition("::")
        if not name or ns in ("", "trt", "tensorrt", "std") or "." in ns + name:
            raise ValueError(f"bad plugin id {plugin_id}")

        def deco(fn: Any) -> Any:
            if plugin_id in self.registry:
                raise ValueError(f"'{plugin_id}' already registered")
            sig = inspect.signature(fn)
            tensors, attrs, saw_attr = [], {}, False
            for i, (pname, p) in enumerate(sig.parameters.items()):
                if p.annotation is inspect.Parameter.empty:
                    raise ValueError(f"Argument {pname} does not have a type annotation")
                if p.default is not inspect.Parameter.empty:
                    raise ValueError(f"Argument {pname} has a default value")
                if isinstance(p.annotation, str):
                    raise TypeError(f"annotation of {pname} is a string (postponed annotations?)")
                if inspect.isclass(p.annotation) and issubclass(p.annotation, TensorDesc):
                    if saw_attr:
                        raise ValueError("TensorDescs and attributes cannot be interspersed")
                    tensors.append(pname)
                else:
                    if i == 0:
                        raise ValueError("TensorDescs args should come first")
                    if pname in ("outputs", "stream", "tactic"):
                        raise ValueError(f"'{pname}' is not allowed as a plugin attribute name")
                    if p.annotation not in SERIALIZABLE:
                        raise ValueError(f"Attribute '{pname}' of type {p.annotation} is not serializable")
                    attrs[pname] = p.annotation
                    saw_attr = True
            ret = sig.return_annotation
            if ret is inspect.Parameter.empty:
                raise ValueError("No return annotation found for register function")
            if typing.get_origin(ret) is tuple:
                n_out = len(typing.get_args(ret))
            elif inspect.isclass(ret) and issubclass(ret, TensorDesc):
                n_out = 1
            else:
                raise ValueError(f"Return argument is of type {ret}")
            self.registry[plugin_id] = PluginDef(plugin_id, tensors, attrs, n_out, fn)
            return fn

        return deco

    def _schema_attrs(self, fn: Any, d: PluginDef, tail: tuple[str, ...], optional_tail: tuple[str, ...] = ()) -> list[str]:
        names = list(inspect.signature(fn).parameters)
        for t in optional_tail:
            if names and names[-1] == t:
                names = names[:-1]
                tail = (*tail, t)
        used = [n for n in names if n in d.attrs]
        expected = [*d.tensor_names, *[a for a in d.attrs if a in used], *tail]
        if list(inspect.signature(fn).parameters) != expected:
            raise ValueError(f"Signature of '{fn.__name__}' does not match the expected schema ({', '.join(expected)})")
        return used

    def autotune(self, plugin_id: str) -> Any:
        def deco(fn: Any) -> Any:
            d = self.registry[plugin_id]
            d.autotune_attrs = self._schema_attrs(fn, d, ("outputs",))
            d.autotune_fn = fn
            return fn
        return deco

    def impl(self, plugin_id: str) -> Any:
        def deco(fn: Any) -> Any:
            d = self.registry[plugin_id]
            names = list(inspect.signature(fn).parameters)
            tail = ("outputs", "stream", "tactic") if names[-1] == "tactic" else ("outputs", "stream")
            d.impl_attrs = self._schema_attrs(fn, d, tail)
            ann = inspect.signature(fn).parameters["outputs"].annotation
            if ann is not inspect.Parameter.empty and typing.get_origin(ann) is not tuple:
                raise ValueError("'outputs' should be of type Tuple[Tensor]")
            d.impl_fn = fn
            return fn
        return deco

    def aot_impl(self, plugin_id: str) -> Any:
        def deco(fn: Any) -> Any:
            d = self.registry[plugin_id]
            used = self._schema_attrs(fn, d, ("outputs", "tactic"))
            if used != list(d.attrs):  # TensorRT passes every attribute positionally (see _plugin_class.py)
                raise ValueError(f"aot_impl must declare all attributes {list(d.attrs)} in order, got {used}")
            ret = inspect.signature(fn).return_annotation
            if ret is inspect.Parameter.empty:
                raise ValueError("No return annotation found for aot_impl function")
            args = typing.get_args(ret)
            if typing.get_origin(ret) is not tuple or len(args) != 4:
                raise ValueError(f"Return annotation is {ret}")
            for a in args[:2]:
                members = typing.get_args(a) if typing.get_origin(a) in (typing.Union, types.UnionType) else (a,)
                if any(m not in (str, bytes) for m in members):
                    raise ValueError(f"Return annotation member {a} is not str/bytes")
            if not issubclass(args[2], KernelLaunchParams) or not issubclass(args[3], SymExprs):
                raise ValueError("Return annotation must end with KernelLaunchParams, SymExprs")
            d.aot_impl_fn = fn
            return fn
        return deco

    # what TensorRT does with a plugin node at build time -------------------------
    def choose_impl(self, d: PluginDef, node_aot: Any, prefer: str | None) -> bool:
        """True for AOT: the rules of tensorrt/plugin/_lib.py `create_plugin` (10.9+)."""
        if self._no_aot:
            if node_aot is not None:  # assumption: before 10.9 the parser passes `aot` on as a field
                raise AssertionError(f"Unexpected attribute aot provided to create_plugin. Expected one of {list(d.attrs)}.")
            return False
        if node_aot is not None:  # the node's own request is strict
            if node_aot and d.aot_impl_fn is None:
                raise ValueError(f"AOT implementation requested, but not defined for '{d.name}'.")
            if not node_aot and d.impl_fn is None:
                raise ValueError(f"JIT implementation requested, but not defined for '{d.name}'.")
            return bool(node_aot)
        if d.aot_impl_fn is not None and d.impl_fn is not None:
            if prefer is None:
                raise ValueError(f"Plugin '{d.name}' has both AOT and JIT implementations. NetworkDefinitionCreationFlag."
                                 "PREFER_AOT_PYTHON_PLUGINS or NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS "
                                 "should be specified.")
            return prefer == "aot"
        if d.aot_impl_fn is None and d.impl_fn is None:
            raise ValueError(f"Plugin '{d.name}' does not have either a AOT or JIT implementation.")
        return d.aot_impl_fn is not None

    def build_node(self, plugin_id: str, fields: dict[str, Any], inputs: list[TensorDesc], aot: bool) -> list[dict]:
        d = self.registry[plugin_id]
        attrs = {k: d.attrs[k](fields[k]) for k in d.attrs}
        outs = d.register_fn(*inputs, **attrs)
        outs = outs if isinstance(outs, tuple) else (outs,)
        combos = d.autotune_fn(*inputs, *[attrs[k] for k in d.autotune_attrs], outs) if d.autotune_fn else []
        dtype = {TRT.float16: "FP16", TRT.float32: "FP32"}[inputs[0].dtype]
        tactics = [t for c in combos if all(x == dtype for x in c.io_types) for t in c.tactics] or [0]
        launches = []
        for tactic in tactics:
            if not aot:
                launches.append({"tactic": tactic, "jit": True})
                continue
            name, ptx, lp, extra = d.aot_impl_fn(*inputs, *attrs.values(), outs, tactic)
            if not isinstance(extra, SymExprs) or any(type(e) not in (SymInt32, ShapeExpr) for e in extra):
                raise TypeError("Extra args must be tensorrt.plugin.SymInt32")
            launches.append({"tactic": tactic, "kernel_name": name.decode() if isinstance(name, bytes) else name,
                             "ptx": ptx.decode() if isinstance(ptx, bytes) else ptx,
                             "launch": {f: repr(getattr(lp, f)) for f in KernelLaunchParams.FIELDS},
                             "launch_values": {f: getattr(lp, f).value for f in KernelLaunchParams.FIELDS},
                             "extra": [repr(e) for e in extra], "num_inputs": len(inputs),
                             "num_outputs": len(outs)})
        return launches


# ------------------------------------------------------------------------------ tensorrt


class DataType:
    def __init__(self, name: str, np_type: Any) -> None:
        self.name, self.np = name, np_type

    def __repr__(self) -> str:
        return f"DataType.{self.name}"


class _Enum:
    def __init__(self, **members: int) -> None:
        for k, v in members.items():
            setattr(self, k, v)


class FakeTensor:
    def __init__(self, name: str, dtype: DataType, shape: tuple[int, ...]) -> None:
        self.name, self.dtype, self.shape = name, dtype, shape


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[FakeTensor] = []
        self.outputs: list[FakeTensor] = []
        self.plugin_launches: list[dict] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> FakeTensor:
        return self.inputs[i]

    def get_output(self, i: int) -> FakeTensor:
        return self.outputs[i]


class ParserError:
    def __init__(self, desc: str, node: str = "", op: str = "") -> None:
        self._d, self._n, self._o = desc, node, op

    def desc(self) -> str:
        return self._d

    def node_name(self) -> str:
        return self._n

    def node_operator(self) -> str:
        return self._o


class FakeParser:
    def __init__(self, trt: "FakeTRT", network: FakeNetwork, logger: Any) -> None:
        self.trt, self.network, self.errors = trt, network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> ParserError:
        return self.errors[i]

    def parse_from_file(self, path: str) -> bool:
        import onnx

        if self.trt.parse_error:
            self.errors.append(ParserError(self.trt.parse_error, "node_x", "Foo"))
            return False
        m = onnx.load(path)
        trt = self.trt

        def dt(elem: int) -> DataType:
            return {onnx.TensorProto.FLOAT: trt.float32, onnx.TensorProto.FLOAT16: trt.float16}[elem]

        def shape(vi: Any) -> tuple[int, ...]:
            return tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)

        self.network.inputs = [FakeTensor(v.name, dt(v.type.tensor_type.elem_type), shape(v)) for v in m.graph.input]
        self.network.outputs = [FakeTensor(v.name, dt(v.type.tensor_type.elem_type), shape(v)) for v in m.graph.output]
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
        upstream = _upstream_types(m)
        F = trt.NetworkDefinitionCreationFlag
        bit = lambda name: hasattr(F, name) and bool(self.network.flags & (1 << getattr(F, name)))  # noqa: E731
        prefer = "aot" if bit("PREFER_AOT_PYTHON_PLUGINS") else "jit" if bit("PREFER_JIT_PYTHON_PLUGINS") else None
        for node in (n for n in m.graph.node if n.domain not in ("", "ai.onnx")):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            ns = attrs.get("plugin_namespace", b"").decode() or node.domain
            pid = f"{ns}::{node.op_type}"
            if pid not in trt.plugin.registry:
                self.errors.append(ParserError("Plugin not found", node.name, node.op_type))
                return False
            d = trt.plugin.registry[pid]
            missing = [k for k in d.attrs if k not in attrs]
            if missing:  # TensorRT warns and skips the field; register() then fails
                self.errors.append(ParserError(f"fields {missing} not found in plugin node", node.name, node.op_type))
                return False
            try:
                aot = trt.plugin.choose_impl(d, attrs.get("aot"), prefer)
            except (ValueError, AssertionError) as e:
                self.errors.append(ParserError(str(e), node.name, node.op_type))
                return False
            descs = []
            for name in node.input:
                if name in inits:
                    descs.append(TensorDesc(dt(onnx.helper.np_dtype_to_tensor_dtype(inits[name].dtype)),
                                            tuple(inits[name].shape)))
                else:  # an activation: its dtype and shape as inferred from the tensors that produce it
                    elem, dims = upstream[name]
                    descs.append(TensorDesc(dt(elem), tuple(-1 if isinstance(v, str) else v for v in dims),
                                            tuple(v if isinstance(v, str) else None for v in dims)))
            self.network.plugin_launches += [{"node": node.name, **r} for r in
                                             trt.plugin.build_node(pid, attrs, descs, aot)]
        return True


def _upstream_types(m: Any) -> dict[str, tuple[int, tuple]]:
    """elem type and dims (ints, or dim_param names) of every activation, by ONNX shape inference on a copy
    where each custom-domain node is an Identity of its first input (the plugin's output is `u.like()`)."""
    import onnx

    g = onnx.ModelProto()
    g.CopyFrom(m)
    for node in g.graph.node:
        if node.domain not in ("", "ai.onnx"):
            inputs = [node.input[0]]
            outputs = list(node.output[:1])
            node.Clear()
            node.op_type = "Identity"
            node.input.extend(inputs)
            node.output.extend(outputs)
    inferred = onnx.shape_inference.infer_shapes(g, strict_mode=True)
    out = {}
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tt = vi.type.tensor_type
        out[vi.name] = (tt.elem_type, tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                            for d in tt.shape.dim))
    return out


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, name: str, mn: tuple, opt: tuple, mx: tuple) -> None:
        if not all(a <= b <= c for a, b, c in zip(mn, opt, mx)):
            raise RuntimeError("inconsistent profile")
        self.shapes[name] = (mn, opt, mx)


class FakeCache:
    """A timing cache: a JSON header (TensorRT version + GPU) and entries."""

    def __init__(self, header: dict, entries: dict | None = None) -> None:
        self.header, self.entries = header, dict(entries or {})

    @classmethod
    def parse(cls, blob: bytes, header: dict) -> "FakeCache":
        if not blob:
            return cls(header)
        d = json.loads(blob)
        return cls(d["header"], d["entries"])

    def combine(self, other: "FakeCache", ignore_mismatch: bool) -> bool:
        if other.header["trt"] != self.header["trt"]:
            return False
        if other.header != self.header and not ignore_mismatch:
            return False
        for k, v in other.entries.items():
            self.entries.setdefault(k, v)
        return True

    def serialize(self) -> bytes:
        return json.dumps({"header": self.header, "entries": self.entries}, sort_keys=True).encode()


class FakeConfig:
    def __init__(self, trt: "FakeTRT") -> None:
        self.trt = trt
        self.pools: dict = {}
        self.profiles: list[FakeProfile] = []
        self.cache: FakeCache | None = None
        self.builder_optimization_level = 3
        self.cache_failure = trt.cache_failure  # "none": get_timing_cache() is None; "raise": it raises

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.pools[pool] = size

    def add_optimization_profile(self, p: FakeProfile) -> int:
        self.profiles.append(p)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> FakeCache:
        return FakeCache.parse(bytes(blob), self.trt.cache_header)

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        if cache.header != self.trt.cache_header and not ignore_mismatch:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> FakeCache | None:
        if self.cache_failure == "raise":
            raise RuntimeError("ITimingCache::serialize: internal error")
        return None if self.cache_failure == "none" else self.cache


class FakeBuilder:
    def __init__(self, trt: "FakeTRT", logger: Any) -> None:
        self.trt = trt
        trt.builders.append(self)
        self.network: FakeNetwork | None = None
        self.config: FakeConfig | None = None

    def create_network(self, flags: int) -> FakeNetwork:
        self.network = FakeNetwork(flags)
        return self.network

    def create_builder_config(self) -> FakeConfig:
        self.config = FakeConfig(self.trt)
        return self.config

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes | None:
        if self.trt.fail_build:
            return None
        if config.cache is not None:  # "time" one layer per build, keyed by the network's inputs
            config.cache.entries[f"layer:{network.inputs[0].shape}:{len(config.cache.entries)}"] = 1.0
        io = [(t.name, "INPUT", t.dtype.name, t.shape) for t in network.inputs]
        io += [(t.name, "OUTPUT", t.dtype.name, t.shape) for t in network.outputs]
        return json.dumps({"engine": True, "flags": network.flags, "io": io,
                           "profiles": [{n: list(v) for n, v in p.shapes.items()} for p in config.profiles]}).encode()


class FakeGraph:
    """A captured enqueue, bound to the context state it was captured in."""

    def __init__(self, context: "FakeContext", enqueue: Any) -> None:
        self.context, self.state, self.enqueue = context, context.state(), enqueue


class FakeMemory:
    """Device memory as numpy byte arrays keyed by fake addresses; counts copies, captures, replays.
    A replayed graph must match its context's current state (shapes and profile of its last run)."""

    name = "fake"
    handle = 7
    graphs = "fake graphs"

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.next = 0x1000
        self.captures = self.replays = self.allocs = 0
        self.capture_fails = False
        self.capturing = False
        self.last_context: Any = None

    def alloc(self, nbytes: int) -> int:
        self.next += 0x100000
        self.buffers[self.next] = np.zeros(max(nbytes, 1), np.uint8)
        self.allocs += 1
        return self.next

    def ptr(self, buf: int) -> int:
        return buf

    def h2d(self, buf: int, arr: np.ndarray) -> None:
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        self.buffers[buf][:raw.size] = raw

    def d2h(self, buf: int, shape: tuple, dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self.buffers[buf][:n].view(dtype).reshape(shape).copy()

    def sync(self) -> None:
        pass

    def capture(self, enqueue: Any) -> Any:
        if self.capture_fails:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures += 1
        self.capturing = True
        try:
            enqueue()
        finally:
            self.capturing = False
        return FakeGraph(self.last_context, enqueue)

    def replay(self, graph: FakeGraph) -> None:
        if graph.context.state() != graph.state:
            raise RuntimeError(f"stale CUDA graph: captured for {graph.state}, the context last ran "
                               f"{graph.context.state()}")
        self.replays += 1
        graph.enqueue()


class FakeContext:
    """Computes logits[b, k] = (k + 1) * mean(input[b]) from the bytes at the bound addresses."""

    def __init__(self, engine: "FakeEngine") -> None:
        self.engine, self.shapes, self.addresses, self.runs = engine, {}, {}, 0
        self.profile_index = 0
        self.ran: tuple = ()  # (profile, shapes) of the last enqueue: what a captured graph is bound to
        self.profile_runs: list[int] = []

    def state(self) -> tuple:
        return self.ran

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        if not 0 <= index < len(self.engine.profiles):
            return False
        self.profile_index = index
        return True

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        lo, _, hi = self.engine.profiles[self.profile_index][name]
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()))[0]
        return (batch, *self.engine.io[name][2][1:])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        mem = self.engine.memory
        mem.last_context = self
        if mem.capturing:  # stream capture records the launches, runs nothing
            return True
        (iname,) = [n for n, v in self.engine.io.items() if v[0] == "INPUT"]
        (oname,) = [n for n, v in self.engine.io.items() if v[0] == "OUTPUT"]
        x = mem.d2h(self.addresses[iname], self.shapes[iname], self.engine.io[iname][1].np)
        oshape = self.get_tensor_shape(oname)
        y = x.reshape(x.shape[0], -1).astype(np.float64).mean(1)[:, None] * np.arange(1, oshape[1] + 1)
        mem.h2d(self.addresses[oname], y.astype(self.engine.io[oname][1].np))
        self.runs += 1
        self.ran = (self.profile_index, tuple(sorted(self.shapes.items())))
        self.profile_runs.append(self.profile_index)
        return True


class FakeEngine:
    def __init__(self, trt: "FakeTRT", plan: dict, memory: FakeMemory) -> None:
        dts = {"FLOAT": trt.float32, "HALF": trt.float16}
        self.io = {n: (mode, dts[dt], tuple(shape)) for n, mode, dt, shape in plan["io"]}
        self.profiles = [{n: tuple(tuple(s) for s in v) for n, v in p.items()} for p in plan["profiles"]]
        self.profile = self.profiles[0]
        self.memory = memory
        self.names = list(self.io)
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return self.io[name][0]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.io[name][1]

    def create_execution_context(self) -> FakeContext:
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]


class FakeRuntime:
    def __init__(self, trt: "FakeTRT") -> None:
        self.trt = trt

    def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine | None:
        try:
            plan = json.loads(blob)
        except (ValueError, UnicodeDecodeError):
            return None
        self.trt.engines.append(FakeEngine(self.trt, plan, self.trt.memory))
        return self.trt.engines[-1]


class FakeTRT(types.ModuleType):
    """`tensorrt` 10.x/11-like: strongly typed flag, AOT/JIT plugin preferences, ONNX parser, builder."""

    def __init__(self, version: str = "10.13.3.9", gpu: str = "H100", aot: bool = True) -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.float32, self.float16 = DataType("FLOAT", np.float32), DataType("HALF", np.float16)
        self.Logger = type("Logger", (), {"WARNING": 2, "VERBOSE": 4, "__init__": lambda s, level=2: None})
        if int(version.split(".")[0]) >= 11:  # NvInfer.h of TensorRT 11
            self.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=0, PREFER_JIT_PYTHON_PLUGINS=1,
                                                       PREFER_AOT_PYTHON_PLUGINS=2)
        elif aot:  # 10.9-10.x
            self.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1, PREFER_JIT_PYTHON_PLUGINS=2,
                                                       PREFER_AOT_PYTHON_PLUGINS=3)
        else:  # 10.6-10.8: JIT plugins only
            self.NetworkDefinitionCreationFlag = _Enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
        self.MemoryPoolType = _Enum(WORKSPACE=0)
        self.TensorIOMode = _Enum(INPUT="INPUT", OUTPUT="OUTPUT")
        self.memory = FakeMemory()
        self.engines: list[FakeEngine] = []
        self.plugin = FakeTRTP(aot=aot)
        self.cache_header = {"trt": version, "gpu": gpu}
        self.builders: list[FakeBuilder] = []
        self.parse_error = ""
        self.fail_build = False
        self.cache_failure = ""

    def Builder(self, logger: Any) -> FakeBuilder:  # noqa: N802 - TensorRT's spelling
        return FakeBuilder(self, logger)

    def OnnxParser(self, network: FakeNetwork, logger: Any) -> FakeParser:  # noqa: N802
        return FakeParser(self, network, logger)

    def Runtime(self, logger: Any) -> FakeRuntime:  # noqa: N802
        return FakeRuntime(self)

    def nptype(self, dtype: DataType) -> Any:
        return dtype.np


TRT = FakeTRT()  # dtype singletons shared by every FakeTRT (build_node compares against them)


def install(monkeypatch: Any, trt: FakeTRT | None = None, gpu: tuple[str, str] = ("NVIDIA H100 80GB HBM3", "9.0"),
            driver: tuple[str, tuple[int, int]] = ("570.124.06", (12, 8))) -> FakeTRT:
    """Put a fake TensorRT, GPU and driver in place for spvit_deploy.engine (pytest monkeypatch)."""
    import sys

    from spvit_deploy.engine import device, trt_plugin

    trt = trt or FakeTRT()
    trt.float32, trt.float16 = TRT.float32, TRT.float16
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trt.plugin)
    monkeypatch.setattr(device, "gpu_info", lambda index=0: device.GpuInfo(gpu[0], gpu[1], 80.0, "fake"))
    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo(driver[0], driver[1], "fake"))
    monkeypatch.setattr(trt_plugin, "_DEFINED", {})
    return trt
