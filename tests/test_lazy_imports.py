"""`import spvit_deploy` and its stage packages stay cheap: heavy libraries load on first use."""
from __future__ import annotations

import subprocess
import sys

import pytest

PACKAGES = ["spvit_deploy", "spvit_deploy.bench", "spvit_deploy.engine", "spvit_deploy.export", "spvit_deploy.passes",
            "spvit_deploy.train", "spvit_deploy.latency"]


def test_packages_import_without_heavy_libraries():
    code = ("import sys\n" + "".join(f"import {p}\n" for p in PACKAGES)
            + "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'timm', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_lazy_name_is_the_object_its_module_defines(package):
    """Also after the submodules were imported, as the CLI does."""
    import importlib

    mod = importlib.import_module(package)
    names = [n for n in mod.__all__ if n != "__version__"]
    for name in names:  # import every submodule first, as the CLI does
        importlib.import_module(f".{mod._EXPORTS[name]}", package)
    for name in names:
        expected = getattr(importlib.import_module(f".{mod._EXPORTS[name]}", package), name)
        assert getattr(mod, name) is expected and getattr(mod, name) is expected, name
        assert not isinstance(expected, type(sys))  # a function or class, never a module
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        getattr(mod, "nope")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_submodule_is_named_like_an_export(package):
    """Importing a submodule binds it to the package's attribute of the same name, which would hide
    an exported function so named (the reason `bench.benchmark`, `train.search` and
    `train.finetune` were renamed `bench.harness`, `train.gate_search` and `train.finetuning`)."""
    import importlib
    import pkgutil

    mod = importlib.import_module(package)
    clashes = set(mod._EXPORTS) & {m.name for m in pkgutil.iter_modules(mod.__path__)}
    assert not clashes, f"{package}: submodules named like exports: {sorted(clashes)}"
