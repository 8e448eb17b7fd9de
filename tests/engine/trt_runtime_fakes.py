"""Stand-ins for TensorRT's runtime side (see engine_fakes.py): device memory, a deserialized engine, its
execution contexts (a captured CUDA graph goes stale once the context runs other shapes or another
profile; replaying it then raises) and the runtime that deserializes plans."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from trtp_fakes import DataType

if TYPE_CHECKING:
    from engine_fakes import FakeTRT


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
