"""What the build machine has: TensorRT (imported lazily, with a one-line error when missing) and
the GPU's name and compute capability (torch, cuda-python, pycuda or nvidia-smi, whichever works).
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpvitError

MIN_TRT = (10, 0)  # strongly typed networks
MIN_TRT_PLUGINS = (10, 6)  # tensorrt.plugin (JIT)
MIN_TRT_AOT = (10, 9)  # aot_impl: engines that run without Python
HOW_TO_GET = ("install the extra on a machine with an NVIDIA GPU (pip install 'spvit-deploy[trt]'), "
              "or use the Docker image (docker build -f docker/Dockerfile -t spvit-deploy .)")


def trt_version(trt: Any) -> tuple[int, ...]:
    return tuple(int(p) for p in str(trt.__version__).split(".")[:2] if p.isdigit())


def require_tensorrt(minimum: tuple[int, int] = MIN_TRT) -> Any:
    """`import tensorrt`, or a one-line `SpvitError` saying what is missing and how to get it."""
    try:
        trt = importlib.import_module("tensorrt")
        version = trt.__version__
    except ImportError as e:
        raise SpvitError(f"TensorRT is not installed ({e}); {HOW_TO_GET}") from None
    except Exception as e:  # the PyPI placeholder raises at import when it could not fetch the real wheel
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpvitError(f"TensorRT cannot be imported ({type(e).__name__}: {first[:160]}); {HOW_TO_GET}") from None
    if trt_version(trt) < minimum:
        raise SpvitError(f"TensorRT {version} is too old: this needs {'.'.join(map(str, minimum))} or newer; {HOW_TO_GET}")
    return trt


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"
    memory_gib: float | None = None
    source: str = ""  # which library answered

    @property
    def cc(self) -> int:
        """90 for "9.0": what PTX targets are named by."""
        major, minor = self.compute_capability.split(".")
        return int(major) * 10 + int(minor)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cc": self.cc}


def _from_torch(index: int) -> GpuInfo | None:
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(index)
    return GpuInfo(p.name, f"{p.major}.{p.minor}", round(p.total_memory / 2**30, 1), "torch")


def _from_cuda_python(index: int) -> GpuInfo | None:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
    err, prop = cudart.cudaGetDeviceProperties(index)
    if int(err) != 0:
        return None
    name = prop.name.decode().rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)
    return GpuInfo(name, f"{prop.major}.{prop.minor}", round(prop.totalGlobalMem / 2**30, 1), "cuda-python")


def _from_pycuda(index: int) -> GpuInfo | None:
    import pycuda.driver as drv

    drv.init()
    d = drv.Device(index)
    major, minor = d.compute_capability()
    return GpuInfo(d.name(), f"{major}.{minor}", round(d.total_memory() / 2**30, 1), "pycuda")


def _from_nvidia_smi(index: int) -> GpuInfo | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", f"--id={index}", "--query-gpu=name,compute_cap,memory.total",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or not out.stdout.strip():
        return None
    name, cc, mem = (s.strip() for s in out.stdout.strip().splitlines()[0].split(","))
    return GpuInfo(name, cc, round(float(mem) / 1024, 1), "nvidia-smi")


def gpu_info(index: int = 0) -> GpuInfo:
    """Name and compute capability of GPU `index`, or a one-line `SpvitError` when there is none."""
    for probe in (_from_torch, _from_cuda_python, _from_pycuda, _from_nvidia_smi):
        try:
            info = probe(index)
        except Exception:  # a library missing or without a driver: try the next one
            continue
        if info is not None:
            return info
    raise SpvitError(f"no NVIDIA GPU is visible here (no CUDA device found by torch, cuda-python, pycuda or "
                     f"nvidia-smi); TensorRT engines are built on the GPU they run on: {HOW_TO_GET}")
