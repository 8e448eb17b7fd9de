"""Stand-in for `tensorrt.plugin` (see engine_fakes.py, which installs it as `tensorrt.plugin` beside the
`tensorrt` stand-in): the symbolic shapes, tensor descriptors, launch parameters and autotune
combinations the plugin definitions use, and `FakeTRTP`, the registry with QDP schema validation as in
tensorrt/plugin/_validate.py, which builds a plugin node the way TensorRT's parser does."""
from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DataType:
    def __init__(self, name: str, np_type: Any) -> None:
        self.name, self.np = name, np_type

    def __repr__(self) -> str:
        return f"DataType.{self.name}"


FLOAT32, FLOAT16 = DataType("FLOAT", np.float32), DataType("HALF", np.float16)  # shared by every FakeTRT


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
        dtype = {FLOAT16: "FP16", FLOAT32: "FP32"}[inputs[0].dtype]
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
