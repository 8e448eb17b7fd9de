"""`import spvit_deploy` and its stage packages stay cheap: heavy libraries load on first use."""
from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = ["spvit_deploy", "spvit_deploy.bench", "spvit_deploy.engine", "spvit_deploy.export", "spvit_deploy.train"]


def test_packages_import_without_heavy_libraries():
    code = ("import sys\n" + "".join(f"import {p}\n" for p in PACKAGES)
            + "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'timm', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_name_resolves_and_unknown_names_fail(package):
    import importlib

    mod = importlib.import_module(package)
    for name in mod.__all__:
        if name != "__version__":
            assert getattr(mod, name) is not None
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        getattr(mod, "nope")
