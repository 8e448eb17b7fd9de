"""Atomic file writes (a temporary file beside the target, then a rename) and the early check that
an output path can be written at all, so a bad path fails in one line before any long work."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import SpvitError


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(path: str | os.PathLike[str], *, folder: bool = False, what: str = "output") -> Path:
    """Raise a one-line `SpvitError` unless `path` (a file, or a folder with `folder`) can be written.

    Creates nothing: the nearest folder that exists must be writable (a probe file is made and removed there),
    and `path` must not exist as the other kind.
    """
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise SpvitError(f"cannot write {what} '{target}': it exists and is {kind}")
    base = _nearest_existing(target if folder else target.parent)
    if not base.is_dir():
        raise SpvitError(f"cannot write {what} '{target}': '{base}' is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".spvit-write-check.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SpvitError(f"cannot write {what} '{target}': '{base}' is not writable ({e.strerror})") from None
    return target


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise SpvitError(f"cannot write '{target}': {e.strerror or e}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
