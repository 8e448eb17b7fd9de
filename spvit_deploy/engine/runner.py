"""A TensorRT engine as a runner: `infer(feed) -> outputs` like every runner in `spvit_deploy.bench`.

Device memory and the stream come from torch when it has CUDA, else pycuda. Each input shape gets
a CUDA graph of the enqueue after one plain run (not for engines with JIT Python plugins), replayed
while shapes and buffer addresses stay the same; buffers only grow, so addresses rarely change.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpvitError


class TorchCudaMemory:
    """Device buffers, copies, the stream and CUDA graphs through torch."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise SpvitError("torch sees no CUDA device; TensorRT engines run on NVIDIA GPUs")
        self.torch = torch
        self.stream = torch.cuda.Stream()

    @property
    def handle(self) -> int:
        return int(self.stream.cuda_stream)

    def alloc(self, nbytes: int) -> Any:
        return self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")

    def ptr(self, buf: Any) -> int:
        return int(buf.data_ptr())

    def h2d(self, buf: Any, arr: np.ndarray) -> None:
        src = self.torch.from_numpy(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self.stream):
            buf[:src.numel()].copy_(src, non_blocking=True)

    def d2h(self, buf: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with self.torch.cuda.stream(self.stream):
            host = buf[:n].to("cpu", non_blocking=False)
        return host.numpy().view(dtype).reshape(shape).copy()

    def sync(self) -> None:
        self.stream.synchronize()

    def capture(self, enqueue: Any) -> Any:
        g = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(g, stream=self.stream):
            if not enqueue():
                raise RuntimeError("enqueue failed during capture")
        return g

    def replay(self, graph: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            graph.replay()


class PyCudaMemory:
    """The same through pycuda (its own CUDA context on device 0)."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  creates the context
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()

    @property
    def handle(self) -> int:
        return int(self.stream.handle)

    def alloc(self, nbytes: int) -> Any:
        return self.cuda.mem_alloc(max(nbytes, 1))

    def ptr(self, buf: Any) -> int:
        return int(buf)

    def h2d(self, buf: Any, arr: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(buf, np.ascontiguousarray(arr), self.stream)

    def d2h(self, buf: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        host = self.cuda.pagelocked_empty(shape, dtype)
        self.cuda.memcpy_dtoh_async(host, buf, self.stream)
        self.stream.synchronize()
        return np.array(host)

    def sync(self) -> None:
        self.stream.synchronize()

    def capture(self, enqueue: Any) -> Any:
        self.stream.begin_capture()  # pycuda >= 2021.1
        try:
            ok = enqueue()
        finally:
            graph = self.stream.end_capture()
        if not ok:
            raise RuntimeError("enqueue failed during capture")
        return graph.instantiate()

    def replay(self, graph: Any) -> None:
        graph.launch(self.stream)


def device_memory(kind: str = "auto") -> Any:
    """torch (when installed with CUDA), else pycuda; `kind` forces one."""
    if kind not in ("auto", "torch", "pycuda"):
        raise SpvitError(f"memory backend must be auto, torch or pycuda, not '{kind}'")
    if kind in ("auto", "torch") and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available() or kind == "torch":
            return TorchCudaMemory()
    if importlib.util.find_spec("pycuda") is None:
        raise SpvitError("no CUDA memory library: install torch with CUDA, or pycuda (pip install 'spvit-deploy[trt]')")
    return PyCudaMemory()


class TensorRTRunner:
    """A serialized engine (`.plan`) with `infer(feed) -> outputs`, feeds and outputs numpy by tensor name."""

    def __init__(self, plan: str | os.PathLike[str], *, cuda_graph: bool = True, memory: str = "auto",
                 trt: Any = None, mem: Any = None) -> None:
        from .build import read_sidecar
        from .device import require_tensorrt

        self.trt = trt or require_tensorrt()
        p = Path(plan)
        if not p.is_file():
            raise SpvitError(f"engine '{p}' does not exist; build it with 'spvit-deploy build-engine'")
        self.meta = read_sidecar(p)
        jit = any(rec.get("implementation") == "jit" for rec in self.meta.get("plugins") or [])
        if jit:  # the engine calls back into Python: the plugin must be defined in this process
            from .trt_plugin import register_plugin

            register_plugin(aot=False, jit=True)
        self.mem = mem or device_memory(memory)
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(p.read_bytes())
        if self.engine is None:
            raise SpvitError(f"TensorRT {self.trt.__version__} cannot load '{p}' (built by TensorRT "
                             f"{self.meta.get('tensorrt_version', '?')} on {self.meta.get('gpu', '?')}); rebuild it here")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = self.trt.TensorIOMode
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == mode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == mode.OUTPUT]
        self.dtypes = {n: np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.use_graphs = cuda_graph and not jit
        self.name = f"tensorrt[{self.meta.get('precision', '?')}{',plugins' if self.meta.get('plugins') else ''}]"
        self._bufs: dict[str, tuple[int, Any]] = {}  # name -> (capacity bytes, buffer)
        self._graphs: dict[tuple, Any] = {}
        self.graph_failures = 0

    def _buffer(self, name: str, nbytes: int) -> Any:
        cap, buf = self._bufs.get(name, (-1, None))
        if nbytes > cap:
            buf = self.mem.alloc(nbytes)
            self._bufs[name] = (nbytes, buf)
            self._graphs.clear()  # captured graphs hold the old addresses
        return buf

    def _enqueue(self) -> bool:
        return bool(self.context.execute_async_v3(self.mem.handle))

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise SpvitError(f"feed lacks engine input(s) {missing} (has {sorted(feed)})")
        for n in self.input_names:
            x = np.ascontiguousarray(feed[n], dtype=self.dtypes[n])
            if not self.context.set_input_shape(n, x.shape):
                raise SpvitError(f"input '{n}' shape {list(x.shape)} is outside the engine's profile "
                                 f"{self.meta.get('profile', '?')}")
            buf = self._buffer(n, x.nbytes)
            self.mem.h2d(buf, x)
        shapes = {n: tuple(int(d) for d in self.context.get_tensor_shape(n)) for n in self.output_names}
        for n, shape in shapes.items():
            self._buffer(n, int(np.prod(shape)) * self.dtypes[n].itemsize)
        for n in (*self.input_names, *self.output_names):
            self.context.set_tensor_address(n, self.mem.ptr(self._bufs[n][1]))
        key = tuple(tuple(feed[n].shape) for n in self.input_names)
        graph = self._graphs.get(key)
        if graph is not None:
            self.mem.replay(graph)
        else:
            if not self._enqueue():
                raise SpvitError("TensorRT failed to run the engine (execute_async_v3 returned False)")
            if self.use_graphs:
                self.mem.sync()  # capture only after a plain run did any lazy initialisation
                try:
                    self._graphs[key] = self.mem.capture(self._enqueue)
                except Exception:
                    self.graph_failures += 1
                    self.use_graphs = False  # not capturable: plain launches from now on
        out = {n: self.mem.d2h(self._bufs[n][1], shapes[n], self.dtypes[n]) for n in self.output_names}
        self.mem.sync()
        return out

    def time(self, feed: dict[str, np.ndarray], iters: int = 100, warmup: int = 10) -> list[float]:
        """Seconds per engine launch on `feed` (graph replay or enqueue, then a stream sync; no copies),
        after one `infer` that sets shapes, buffers and the graph up."""
        import time

        self.infer(feed)
        key = tuple(tuple(feed[n].shape) for n in self.input_names)
        graph = self._graphs.get(key)

        def launch() -> None:
            if graph is not None:
                self.mem.replay(graph)
            elif not self._enqueue():
                raise SpvitError("TensorRT failed to run the engine (execute_async_v3 returned False)")
            self.mem.sync()

        for _ in range(warmup):
            launch()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            launch()
            times.append(time.perf_counter() - t0)
        return times

    def close(self) -> None:
        self._graphs.clear()
        self._bufs.clear()
        self.context = self.engine = None


# ------------------------------------------------------------------------------ benchmark backend


def probe() -> str | None:
    """None when TensorRT engines can run here, else why not (one line)."""
    from .device import gpu_info, require_tensorrt

    try:
        require_tensorrt()
        gpu_info()
    except SpvitError as e:
        return str(e)
    return None


def make_runner(path: str, threads: int | None = None, settings: Any = None) -> TensorRTRunner:
    """The benchmark's maker: a `.plan` is loaded; an `.onnx` is first built (fp16, plugins where there
    are conv blocks) into `<onnx>.fp16.plan` beside it, with a shared timing cache in that folder."""
    from .build import BuildSettings, build_engine, prepare_graph

    p = Path(path)
    if p.suffix == ".plan":
        return TensorRTRunner(p)
    settings = settings or BuildSettings(fp16=True, plugins=True,
                                         timing_cache=str(p.parent / "tensorrt.timing-cache"))
    plan = p.with_name(f"{p.stem}.{'fp16' if settings.fp16 else 'fp32'}.plan")
    graph, info = prepare_graph(p.with_name(f"{p.stem}.trt.onnx"), onnx=p, fp16=settings.fp16,
                                plugins=settings.plugins)
    build_engine(graph, plan, settings, source=info)
    return TensorRTRunner(plan)
