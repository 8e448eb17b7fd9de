"""Fixtures for the training tests: a tiny real-image ImageFolder (digits) and CLI helpers."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SPVIT = str(Path(sys.executable).parent / "spvit-deploy")
NANO = "vit_nano_patch4_32"


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 digits per class: 60 train / 20 val images, 32x32 PNGs."""
    from spvit_deploy.train.demo import prepare_digits

    root = tmp_path_factory.mktemp("digits")
    prepare_digits(root, seed=0, val_fraction=0.2, per_class=8)
    return root


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
