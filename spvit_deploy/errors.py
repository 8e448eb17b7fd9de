"""User-facing errors and lazy imports of optional heavy libraries.

`SpvitError` carries a one-line message that the CLI prints without a traceback.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class SpvitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import `module` lazily; raise a one-line `SpvitError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        need = what or module
        raise SpvitError(
            f"{need} is not installed ({e.__class__.__name__}: {e}); "
            f"install it with: pip install 'spvit-deploy[{extra}]'"
        ) from None
