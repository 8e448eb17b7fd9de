"""Backends by name: what each runner loads, whether it can run here, and how to make it.

Add one with `register_backend(Backend(...))` (the TensorRT engine stage does); a backend whose
`probe` returns a reason is skipped with that reason instead of failing the benchmark.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

from ..errors import SpvitError
from .runners import Runner


@dataclass(frozen=True)
class Backend:
    name: str
    artifact: str  # what the runner loads: "onnx" (an exported graph) or "torch" (a pickled module)
    description: str
    probe: Callable[[], str | None]  # None when usable here, else why not (one line)
    make: Callable[[str, int | None], Runner]  # (artifact path, threads) -> runner


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.artifact not in ("onnx", "torch"):
        raise ValueError(f"backend artifact must be 'onnx' or 'torch', got {backend.artifact!r}")
    BACKENDS[backend.name] = backend
    return backend


def _ort_provider_probe(provider: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install 'spvit-deploy[onnx]')"
        import onnxruntime

        avail = onnxruntime.get_available_providers()
        if provider not in avail:
            return f"ONNX Runtime here has no {provider} (available: {', '.join(avail)})"
        return None

    return probe


def _ort_maker(providers: tuple[str, ...]) -> Callable[[str, int | None], Runner]:
    def make(path: str, threads: int | None) -> Runner:
        from .runners import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, threads=threads, providers=providers)

    return make


def _torch_probe(device: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device visible to PyTorch"
        return None

    return probe


def _torch_maker(device: str) -> Callable[[str, int | None], Runner]:
    def make(path: str, threads: int | None) -> Runner:
        from .runners import TorchRunner

        return TorchRunner.from_file(path, threads=threads, device=device)

    return make


def _tensorrt_probe() -> str | None:
    try:
        from ..engine.runner import probe
    except ImportError as e:
        return f"the TensorRT runner (spvit_deploy.engine) cannot be imported ({e})"
    return probe()


def _tensorrt_make(path: str, threads: int | None) -> Runner:
    from ..engine.runner import make_runner  # builds an fp16 engine beside the ONNX graph, then loads it

    return make_runner(path, threads)


register_backend(Backend("onnxruntime", "onnx", "ONNX Runtime, CPU execution provider",
                         _ort_provider_probe("CPUExecutionProvider"), _ort_maker(("CPUExecutionProvider",))))
register_backend(Backend("onnxruntime-cuda", "onnx", "ONNX Runtime, CUDA execution provider",
                         _ort_provider_probe("CUDAExecutionProvider"),
                         _ort_maker(("CUDAExecutionProvider", "CPUExecutionProvider"))))
register_backend(Backend("torch", "torch", "PyTorch eager, CPU, fp32", _torch_probe("cpu"), _torch_maker("cpu")))
register_backend(Backend("torch-cuda", "torch", "PyTorch eager, CUDA, fp32", _torch_probe("cuda"),
                         _torch_maker("cuda")))
register_backend(Backend("tensorrt", "onnx", "TensorRT engine (fp16) built from the ONNX graph", _tensorrt_probe,
                         _tensorrt_make))


def parse_backends(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """`"onnxruntime,torch"` -> a checked list of backend names (unknown names are an error)."""
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise SpvitError(f"give at least one backend; known: {', '.join(BACKENDS)}")
    unknown = [n for n in items if n not in BACKENDS]
    if unknown:
        raise SpvitError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    return list(dict.fromkeys(items))


def backend_status(name: str) -> str | None:
    """None when backend `name` can run here, else the reason it cannot."""
    return BACKENDS[name].probe()
