"""Lazy package exports: `import spvit_deploy.<pkg>` stays cheap; a name's module (and the heavy
libraries it imports) loads on first attribute access."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that resolves `name` from `.exports[name]`."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
