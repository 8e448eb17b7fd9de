"""What the build machine has: TensorRT (imported lazily, with a one-line error when missing), the
GPU's name and compute capability (torch, cuda-python, pycuda or nvidia-smi, whichever works, all
honouring CUDA_VISIBLE_DEVICES) and the driver's CUDA version, which bounds the PTX ISA it can load.
"""
from __future__ import annotations

import importlib
import os
import re
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


def visible_device(index: int) -> str | None:
    """What nvidia-smi calls CUDA device `index` (nvidia-smi ignores CUDA_VISIBLE_DEVICES and numbers every
    GPU): the index or UUID listed at that position of CUDA_VISIBLE_DEVICES, None when it hides it."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return str(index)
    listed = [d.strip() for d in env.split(",")]
    listed = listed[:next((i for i, d in enumerate(listed) if not d or d.startswith("-")), len(listed))]
    return listed[index] if index < len(listed) else None


def _from_nvidia_smi(index: int) -> GpuInfo | None:
    if shutil.which("nvidia-smi") is None:
        return None
    dev = visible_device(index)
    if dev is None:
        return None
    out = subprocess.run(["nvidia-smi", f"--id={dev}", "--query-gpu=name,compute_cap,memory.total",
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


# ------------------------------------------------------------------------------ driver and PTX ISA

# The lowest PTX ISA that can target each compute capability (PTX ISA release notes).
# the oldest PTX ISA that targets each GPU; Triton compiles cc >= 90 for the arch-specific sm_XXa
# (sm_90a needs PTX 8.0, not sm_90's 7.8)
MIN_PTX_FOR_SM = {70: 60, 75: 63, 80: 70, 86: 71, 87: 74, 89: 78, 90: 80, 100: 86, 103: 88, 110: 90, 120: 87,
                  121: 88}


@dataclass(frozen=True)
class DriverInfo:
    version: str | None  # "550.54.15"
    cuda: tuple[int, int] | None  # the newest CUDA the driver supports, (12, 4)
    source: str = ""

    @property
    def max_ptx(self) -> int | None:
        """The newest PTX ISA this driver can JIT-compile, as 84 for 8.4 (None when unknown)."""
        return None if self.cuda is None else max_ptx_for_cuda(self.cuda)

    def to_dict(self) -> dict[str, Any]:
        return {"driver_version": self.version, "driver_cuda": None if self.cuda is None else "%d.%d" % self.cuda,
                "driver_max_ptx": self.max_ptx}


def max_ptx_for_cuda(cuda: tuple[int, int]) -> int:
    """PTX ISA shipped with a CUDA release: 11.x -> 7.x, 12.0-12.5 -> 8.0-8.5, 12.6 -> 8.5, 12.8 -> 8.7,
    12.9 -> 8.8, 13.x -> 9.x (as 84 for 8.4)."""
    major, minor = cuda
    if major >= 13:
        return 90 + (major - 13) * 10 + minor
    if major == 12:
        return 80 + minor if minor < 6 else 80 + minor - 1
    if major == 11:
        return 70 + minor
    return 60 + minor


def _split_cuda(v: int) -> tuple[int, int]:
    return v // 1000, (v % 1000) // 10  # 12040 -> (12, 4)


def driver_info() -> DriverInfo:
    """The driver's version and newest CUDA (cuda-python, pycuda or nvidia-smi); fields None when unknown."""
    try:
        try:
            from cuda.bindings import driver as cu  # cuda-python >= 12.6
        except ImportError:
            from cuda import cuda as cu  # type: ignore[no-redef]
        cu.cuInit(0)
        err, v = cu.cuDriverGetVersion()
        if int(err) == 0:
            return DriverInfo(_smi_driver_version(), _split_cuda(int(v)), "cuda-python")
    except Exception:  # noqa: BLE001 - try the next source
        pass
    try:
        import pycuda.driver as drv

        return DriverInfo(_smi_driver_version(), _split_cuda(int(drv.get_driver_version())), "pycuda")
    except Exception:  # noqa: BLE001
        pass
    if shutil.which("nvidia-smi") is None:
        return DriverInfo(None, None, "")
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return DriverInfo(None, None, "")
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out)
    return DriverInfo(_smi_driver_version(), (int(m.group(1)), int(m.group(2))) if m else None, "nvidia-smi")


def _smi_driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0].strip() if out.returncode == 0 and out.stdout.strip() else None


def _ptx_text(v: int) -> str:
    return f"{v // 10}.{v % 10}"


def aot_ptx_version(cc: int, requested: int | None = None, driver: DriverInfo | None = None,
                    bundled: int | None = None) -> dict[str, Any]:
    """The PTX ISA the AOT plugin kernels are compiled at: `requested` (--ptx-version) or the lower of
    what the driver loads and what Triton's ptxas emits. One-line `SpvitError` when the driver here cannot
    load PTX for sm_<cc> at all, or not at the requested version. Returns what the sidecar records."""
    driver = driver or driver_info()
    if bundled is None:
        try:
            from spvit_kernels.trt_kernel import bundled_ptx_version

            bundled = bundled_ptx_version(cc)
        except Exception:  # noqa: BLE001 - unknown: Triton picks its own
            bundled = None
    have = driver.max_ptx
    need = MIN_PTX_FOR_SM.get(cc, 70)
    where = f"the NVIDIA driver here ({driver.version or '?'}, CUDA {driver.to_dict()['driver_cuda']})"
    if have is not None and have < need:
        raise SpvitError(f"{where} loads PTX ISA up to {_ptx_text(have)}, but sm_{cc} kernels need {_ptx_text(need)}; "
                         f"update the driver, or build without --plugins")
    if requested is not None:
        if have is not None and requested > have:
            raise SpvitError(f"--ptx-version {_ptx_text(requested)} is newer than {where} loads "
                             f"({_ptx_text(have)}); use --ptx-version {have} or update the driver")
        if requested < need:
            raise SpvitError(f"--ptx-version {_ptx_text(requested)} cannot target sm_{cc}, which needs PTX "
                             f"{_ptx_text(need)} or newer; use --ptx-version {need} or higher")
        cap = requested
    else:
        known = [v for v in (have, bundled) if v is not None]
        cap = min(known) if known else None
    return {"ptx_version_cap": cap, "bundled_ptx": bundled, **driver.to_dict()}


def check_driver_loads(ptx_versions: list[str], built_on: str = "?") -> None:
    """One-line `SpvitError` when an engine's AOT kernels carry a PTX ISA newer than the driver here loads
    (`ptx_versions` as recorded in its sidecar, "8.4"); silent when the driver's CUDA is unknown."""
    have = driver_info().max_ptx
    if have is None or not ptx_versions:
        return
    newest = max(int(v.replace(".", "")) for v in ptx_versions if re.fullmatch(r"\d+\.\d", v)) \
        if any(re.fullmatch(r"\d+\.\d", v) for v in ptx_versions) else None
    if newest is not None and newest > have:
        raise SpvitError(f"the engine's plugin kernels are PTX {_ptx_text(newest)} (built on {built_on}), but the "
                         f"NVIDIA driver here loads up to {_ptx_text(have)}; update the driver or rebuild with "
                         f"--ptx-version {have}")
