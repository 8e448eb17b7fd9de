"""Lazy package exports: `import spvit_deploy.<pkg>` stays cheap; a name's module (and the heavy
libraries it imports) loads on first attribute access, through the package's module `__getattr__`
(PEP 562).

No submodule shares its name with an exported name (tests/test_lazy_imports.py checks it): Python
binds a submodule to its package's attribute when it is first imported, which would hide an
exported function of the same name.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> None:
    """Make `package` resolve each name in `exports` from its module `.exports[name]` on access
    (a leading dot in the module names a sibling of the package: ".comparison")."""
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        setattr(module, name, value)  # resolved once; later lookups are plain attribute reads
        return value

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
