"""Stand-ins for `tensorrt` and `tensorrt.plugin` (neither exists here): just enough of the documented
API for the builder, the runner and the plugin definitions, with the checks the real modules make
(QDP schema validation as in tensorrt/plugin/_validate.py, read from TensorRT's sources).

`FakeTRT` is a module-like object (`sys.modules["tensorrt"] = FakeTRT()`; `install` puts it in place, with
`tensorrt.plugin` = `trtp_fakes.FakeTRTP`; the runtime side, memory, engine and contexts, is in
`trt_runtime_fakes`). Its ONNX parser reads the graph with `onnx` and, for plugin nodes, does what
TensorRT does at build time: look the creator up by op type + plugin_namespace, pick AOT or JIT as
tensorrt/plugin/_lib.py `create_plugin` does (the node's `aot` attribute first, then the network's
PREFER_*_PYTHON_PLUGINS flag, an error when both implementations exist and nothing says which), build
the fields from the node's attributes in register order, call the register function with the dtype and
shape of the tensor that really feeds the node (ONNX shape inference upstream), autotune, and the AOT
implementation once per advertised tactic.

Enum values are TensorRT's own (NvInfer.h): NetworkDefinitionCreationFlag is EXPLICIT_BATCH=0,
STRONGLY_TYPED=1, PREFER_JIT=2, PREFER_AOT=3 in 10.x and STRONGLY_TYPED=0, PREFER_JIT=1, PREFER_AOT=2 in 11.
`SymInt32` refuses anything but a Python int or a symbolic expression (the real one mishandles numpy
integers). A context's captured graph goes stale once the context runs other shapes or another profile;
replaying a stale graph raises, as the wrong results it gives on a GPU would not.
"""
from __future__ import annotations

import json
import types
from typing import Any

import numpy as np

from trt_runtime_fakes import FakeEngine, FakeMemory, FakeRuntime
from trtp_fakes import (  # noqa: F401  (KernelLaunchParams, SymInt32: the tests' names for them)
    FLOAT16,
    FLOAT32,
    DataType,
    FakeTRTP,
    KernelLaunchParams,
    SymInt32,
    TensorDesc,
)


# ------------------------------------------------------------------------------ tensorrt


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


def install(monkeypatch: Any, trt: FakeTRT | None = None, gpu: tuple[str, str] = ("NVIDIA H100 80GB HBM3", "9.0"),
            driver: tuple[str, tuple[int, int]] = ("570.124.06", (12, 8))) -> FakeTRT:
    """Put a fake TensorRT, GPU and driver in place for spvit_deploy.engine (pytest monkeypatch)."""
    import sys

    from spvit_deploy.engine import device, trt_plugin

    trt = trt or FakeTRT()
    trt.float32, trt.float16 = FLOAT32, FLOAT16  # the singletons build_node compares against
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trt.plugin)
    monkeypatch.setattr(device, "gpu_info", lambda index=0: device.GpuInfo(gpu[0], gpu[1], 80.0, "fake"))
    monkeypatch.setattr(device, "driver_info", lambda: device.DriverInfo(driver[0], driver[1], "fake"))
    monkeypatch.setattr(trt_plugin, "_DEFINED", {})
    return trt
