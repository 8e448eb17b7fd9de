"""Shared by the training tests (a module of its own: conftest.py is not reliably importable when
several test folders run together): the nano model's name and helpers that run the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SPVIT = str(Path(sys.executable).parent / "spvit-deploy")
NANO = "vit_nano_patch4_32"


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([SPVIT, *args], capture_output=True, text=True, env=env(), timeout=timeout)


def start_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([SPVIT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until `path` exists (the process must still be running)."""
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {path} appeared: {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.002)
