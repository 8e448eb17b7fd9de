"""Lazy package exports: `import spvit_deploy.<pkg>` stays cheap; a name's module (and the heavy
libraries it imports) loads on first attribute access.

Some exported functions share their name with a submodule (`spvit_deploy.bench.benchmark` is both
a function and a module). Python binds a submodule to its package's attribute when it is first
imported, which would hide the function from then on; the package's module class therefore
answers exported names itself, whatever the import system bound. Submodules stay importable as
modules (`from spvit_deploy.bench.benchmark import BenchSettings`).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> None:
    """Make `package` resolve each name in `exports` from its module `.exports[name]` on access."""

    def resolve(name: str) -> Any:
        return getattr(importlib.import_module(f".{exports[name]}", package), name)

    class LazyPackage(types.ModuleType):
        def __getattribute__(self, name: str) -> Any:
            if name in exports:
                return resolve(name)
            return super().__getattribute__(name)

        def __getattr__(self, name: str) -> Any:  # neither exported nor set
            raise AttributeError(f"module '{package}' has no attribute '{name}'")

    sys.modules[package].__class__ = LazyPackage
