"""Kernel tests run the Triton kernels in the CPU interpreter where there is no GPU:
TRITON_INTERPRET must be set before spvit_kernels.conv_block is imported (the root
conftest does the same; timm importing triton earlier is fine). With a GPU they run
compiled on CUDA; TRITON_INTERPRET=1 forces the interpreter there too."""

import os
import shutil

import pytest

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kernels: Triton kernel tests (CPU interpreter or CUDA)")
