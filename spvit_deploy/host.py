"""The machine a benchmark ran on: CPU model, cores, load, library versions, date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

PACKAGES = ("spvit-deploy", "torch", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim", "numpy", "tensorrt")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where that is not readable."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores, phys = set(), "0"
    for line in text.splitlines():
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            cores.add((phys, line.split(":", 1)[1].strip()))
    return len(cores) or None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_flags() -> list[str]:
    """The vector ISA flags that matter for GEMM kernels."""
    want = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "neon", "asimd")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in want if w in have]
    except OSError:
        pass
    return []


def cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, utime + stime in clock ticks), from /proc."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(d)] = (name, int(fields[11]) + int(fields[12]))
    return out


def busiest_processes(n: int = 5, interval: float = 1.0) -> list[str]:
    """The `n` processes that used most CPU over the last `interval` seconds, as '%CPU name'."""
    if not os.path.isdir("/proc"):
        return []
    hz = os.sysconf("SC_CLK_TCK")
    before = cpu_ticks()
    time.sleep(interval)
    after = cpu_ticks()
    me = os.getpid()
    busy = []
    for pid, (name, ticks) in after.items():
        used = 100.0 * (ticks - before.get(pid, (name, ticks))[1]) / (hz * interval)
        if used >= 1.0:
            busy.append((used, name + (" (this process)" if pid == me else "")))
    return [f"{u:.0f}% {name}" for u, name in sorted(busy, reverse=True)[:n]]


def other_cpu_percent(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], seconds: float,
                      exclude: set[int]) -> float:
    """CPU used by processes not in `exclude` between two `cpu_ticks()` snapshots, in % of one CPU."""
    if seconds <= 0 or not after:
        return 0.0
    hz = os.sysconf("SC_CLK_TCK")
    ticks = sum(t - before.get(pid, (name, t))[1] for pid, (name, t) in after.items() if pid not in exclude)
    return round(100.0 * ticks / (hz * seconds), 1)


def wait_for_quiet(threshold_pct: float = 20.0, max_wait_s: float = 600.0, poll_s: float = 5.0) -> float:
    """Wait until no other process uses more than `threshold_pct` of a CPU (at most `max_wait_s`); seconds waited."""
    if not os.path.isdir("/proc"):
        return 0.0
    start = time.monotonic()
    while time.monotonic() - start < max_wait_s:
        before, t0 = cpu_ticks(), time.monotonic()
        time.sleep(poll_s)
        if other_cpu_percent(before, cpu_ticks(), time.monotonic() - t0, {os.getpid()}) <= threshold_pct:
            break
    return round(time.monotonic() - start, 1)


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpus() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def environment(threads: int | None = None) -> dict[str, Any]:
    """A JSON-able record of this machine, its load and the library versions."""
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cpus": usable_cpus(),
        "threads": threads,
        "gpus": gpus(),
        "platform": platform.platform(),
        "versions": versions(),
        "load_average": load_average(),
        "busiest_processes": busiest_processes(),
    }
