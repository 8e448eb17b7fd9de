"""A TensorRT engine as a runner: `infer(feed) -> outputs` like every runner in `spvit_deploy.bench`.

Device memory and the stream come from torch when it has CUDA, else pycuda. The enqueue is captured
into a CUDA graph after one plain run (torch.cuda.CUDAGraph, or cuda-python's stream capture beside
pycuda, which has no graph API; never for engines with JIT Python plugins) and replayed while the
input shapes, the optimization profile and the buffer addresses stay the same: any change drops it,
as TensorRT requires. `graph_state` says whether the last launches really replayed a graph. With
several optimization profiles, a batch runs in the profile tuned for it (opt == batch) when there is one.
"""
from __future__ import annotations

import importlib.util
import os
import re
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

    graphs = "torch.cuda.CUDAGraph"

    def capture(self, enqueue: Any) -> Any:
        g = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(g, stream=self.stream):
            if not enqueue():
                raise RuntimeError("enqueue failed during capture")
        return g

    def replay(self, graph: Any) -> None:
        with self.torch.cuda.stream(self.stream):
            graph.replay()


def _cuda_driver_api() -> Any:
    """cuda-python's driver module, or None when it is not installed."""
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cuda as driver  # type: ignore[no-redef]  # older cuda-python
        except ImportError:
            return None
    return driver


def _check(result: Any) -> Any:
    """cuda-python returns (CUresult, values...): raise on an error, else the values."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver call failed: {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


class PyCudaMemory:
    """The same through pycuda (its own CUDA context on device 0). pycuda has no stream capture or
    graph API, so graphs come from cuda-python's driver API on pycuda's stream, when it is installed."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  creates the context
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()
        self.cu = _cuda_driver_api()
        self.graphs = "cuda-python stream capture" if self.cu is not None else None

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
        cu = self.cu
        if cu is None:
            raise RuntimeError("pycuda has no CUDA graph API; install cuda-python for graphs beside pycuda")
        stream = cu.CUstream(self.handle)
        _check(cu.cuStreamBeginCapture(stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
        try:
            ok = enqueue()
        finally:
            graph = _check(cu.cuStreamEndCapture(stream))
        if not ok:
            raise RuntimeError("enqueue failed during capture")
        return _check(cu.cuGraphInstantiateWithFlags(graph, 0)), graph

    def replay(self, graph: Any) -> None:
        _check(self.cu.cuGraphLaunch(graph[0], self.cu.CUstream(self.handle)))


def device_memory(kind: str = "auto") -> Any:
    """torch (when installed with CUDA), else pycuda; `kind` forces one."""
    if kind not in ("auto", "torch", "pycuda"):
        raise SpvitError(f"memory backend must be auto, torch or pycuda, not '{kind}'")
    if kind in ("auto", "torch") and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available() or kind == "torch":
            return TorchCudaMemory()
    if importlib.util.find_spec("pycuda") is None:
        raise SpvitError("no CUDA memory library: install torch with CUDA, or pycuda and cuda-python "
                         "(pip install 'spvit-deploy[pycuda]')")
    return PyCudaMemory()


class TensorRTRunner:
    """A serialized engine (`.plan`) with `infer(feed) -> outputs`, feeds and outputs numpy by tensor name."""

    def __init__(self, plan: str | os.PathLike[str], *, cuda_graph: bool = True, memory: str = "auto",
                 trt: Any = None, mem: Any = None) -> None:
        from .build import read_sidecar
        from .device import check_driver_loads, require_tensorrt

        self.trt = trt or require_tensorrt()
        p = Path(plan)
        if not p.is_file():
            raise SpvitError(f"engine '{p}' does not exist; build it with 'spvit-deploy build-engine'")
        self.meta = read_sidecar(p)
        check_driver_loads([v for rec in self.meta.get("plugins") or [] for v in rec.get("ptx_versions") or []],
                           str(self.meta.get("gpu", "?")))
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
        self.profiles = [dict(p) for p in self.meta.get("profiles") or [self.meta.get("profile") or {}]]
        self.profile_index = 0
        self.use_graphs = cuda_graph and not jit and bool(getattr(self.mem, "graphs", None))
        self.graph_note = ("off (asked)" if not cuda_graph else "off (JIT Python plugins)" if jit else
                           "" if self.use_graphs else f"off ({self.mem.name} has no CUDA graph API)")
        self.name = f"tensorrt[{self.meta.get('precision', '?')}{',plugins' if self.meta.get('plugins') else ''}]"
        self._bufs: dict[str, tuple[int, Any]] = {}  # name -> (capacity bytes, buffer)
        self._graphs: dict[tuple, Any] = {}  # at most one: the graph of the shapes the context last ran
        self._last_key: tuple | None = None
        self.graph_failures = 0
        self.graph_state: dict[str, Any] = {"cuda_graph": False, "note": self.graph_note or "not run yet"}

    def _select_profile(self, batch: int) -> None:
        """Run `batch` in the profile tuned for it (opt == batch), else the first whose range holds it."""
        if len(self.profiles) < 2:
            return
        fits = [i for i, p in enumerate(self.profiles) if p.get("min", 1) <= batch <= p.get("max", batch)]
        best = next((i for i in fits if self.profiles[i].get("opt") == batch), fits[0] if fits else 0)
        if best != self.profile_index:
            if not self.context.set_optimization_profile_async(best, self.mem.handle):
                raise SpvitError(f"TensorRT refused optimization profile {best} ({self.profiles[best]})")
            self.mem.sync()
            self.profile_index = best
            self._graphs.clear()  # a graph is bound to the profile it was captured in

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
        key = (self.profile_index, *(tuple(np.shape(feed[n])) for n in self.input_names))
        self._select_profile(int(np.shape(feed[self.input_names[0]])[0]))
        key = (self.profile_index, *key[1:])
        if key != self._last_key:  # the context now runs other shapes: an older graph must not be replayed
            self._graphs.clear()
        self._last_key = key
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
                except Exception as e:  # noqa: BLE001 - not capturable: plain launches, and the result says so
                    self.graph_failures += 1
                    self.use_graphs = False
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                    self.graph_note = f"off (capture failed: {type(e).__name__}: {first})"
        out = {n: self.mem.d2h(self._bufs[n][1], shapes[n], self.dtypes[n]) for n in self.output_names}
        self.mem.sync()
        return out

    def time(self, feed: dict[str, np.ndarray], iters: int = 100, warmup: int = 10) -> list[float]:
        """Seconds per engine launch on `feed` (graph replay or enqueue, then a stream sync; no copies),
        after one `infer` that sets shapes, buffers and the graph up."""
        import time

        self.infer(feed)
        graph = self._graphs.get(self._last_key)
        self.graph_state = {"cuda_graph": graph is not None, "graph_api": getattr(self.mem, "graphs", None),
                            "note": "replayed" if graph is not None else self.graph_note or "off",
                            "profile": self.profile_index, "profile_batches": self.profiles[self.profile_index]}

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

    def layers(self) -> list[Any]:
        """The engine inspector's layer list (names and tactics when built with `detailed_profile`)."""
        import json

        inspector = self.engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(self.trt.LayerInformationFormat.JSON))
        return list(info.get("Layers", [])) if isinstance(info, dict) else []

    def close(self) -> None:
        self._graphs.clear()
        self._bufs.clear()
        self.context = self.engine = None


FUSED_ATTENTION = re.compile(r"fmha|_mha|mha_|flash|sdpa|fused_?attention|mha\b", re.I)


def fused_attention_layers(layers: list[Any]) -> list[str]:
    """Names of the layers whose tactic or layer type (never the layer or tensor names, which carry
    `attn` for every attention of the ONNX graph) says fused attention. TensorRT's naming is not a
    documented contract, so this is a hint to read beside the latency, not a proof."""
    out = []
    for layer in layers:
        if not isinstance(layer, dict):  # ONELINE/NONE inspector formats carry names only: no evidence
            continue
        text = " ".join(str(layer.get(k, "")) for k in ("TacticName", "LayerType"))
        if FUSED_ATTENTION.search(text):
            out.append(str(layer.get("Name") or text[:120]))
    return out


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


class OnnxEngineRunner:
    """The benchmark's TensorRT runner for an `.onnx` graph: the engine is built (fp16, plugins where there
    are conv blocks) at the first `infer`, for that feed's batch (profile min 1, opt = max = the batch), into
    `<onnx>.fp16.b<batch>.plan` beside the graph with a shared timing cache; a larger batch later builds
    again. So the benchmark's batch sizes are never capped by a fixed profile maximum."""

    def __init__(self, path: str | os.PathLike[str], settings: Any = None) -> None:
        from .build import BuildSettings

        self.path = Path(path)
        self.settings = settings or BuildSettings(fp16=True, plugins=True,
                                                  timing_cache=str(self.path.parent / "tensorrt.timing-cache"))
        self.runner: TensorRTRunner | None = None
        self.max_batch = 0
        self.name = f"tensorrt[{'fp16' if self.settings.fp16 else 'fp32'}{',plugins' if self.settings.plugins else ''}]"

    def _ensure(self, batch: int) -> TensorRTRunner:
        import dataclasses

        from ..passes.prepare import prepare_graph
        from .build import build_engine

        if self.runner is None or batch > self.max_batch:
            if self.runner is not None:
                self.runner.close()
            s = dataclasses.replace(self.settings, min_batch=1, opt_batch=batch, max_batch=batch, opt_batches=())
            p = self.path
            plan = p.with_name(f"{p.stem}.{'fp16' if s.fp16 else 'fp32'}.b{batch}.plan")
            graph, info = prepare_graph(p.with_name(f"{p.stem}.trt.onnx"), onnx=p, fp16=s.fp16, plugins=s.plugins)
            build_engine(graph, plan, s, source=info)
            self.runner, self.max_batch = TensorRTRunner(plan), batch
            self.name = self.runner.name
        return self.runner

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = int(np.shape(next(iter(feed.values())))[0])
        return self._ensure(batch).infer(feed)

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()


def make_runner(path: str, threads: int | None = None, settings: Any = None) -> TensorRTRunner | OnnxEngineRunner:
    """The benchmark's maker: a `.plan` is loaded; an `.onnx` gives an `OnnxEngineRunner` (built for the
    batch of its first feed)."""
    p = Path(path)
    if p.suffix == ".plan":
        return TensorRTRunner(p)
    return OnnxEngineRunner(p, settings)
