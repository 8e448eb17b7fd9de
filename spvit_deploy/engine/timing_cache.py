"""A TensorRT timing cache file shared by builds: loaded before a build, merged with the file's newest
state and written back atomically after, under a file lock (as Polygraphy does)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path`.lock (concurrent builds sharing one timing cache)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class TimingCache:
    """A timing cache file reused across builds: loaded before, merged with the file's newest state
    and written back atomically after (under a lock, as Polygraphy does)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self.loaded_bytes = 0
        self.saved_bytes = 0
        self.reused = False
        self.note = ""
        self._cache: Any = None

    def attach(self, config: Any) -> None:
        """Load the file into the build; a stale, corrupt or unreadable cache starts an empty one."""
        blob = b""
        try:
            if self.path is not None and self.path.is_file():
                blob = self.path.read_bytes()
            self.loaded_bytes = len(blob)
            cache = config.create_timing_cache(blob)
            if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
                raise ValueError("it was made by another TensorRT version or GPU")
        except Exception as e:  # noqa: BLE001 - a cache problem never stops a build
            self.note = f"the timing cache {self.path} could not be used ({_one_line(e)}); starting an empty one"
            blob = b""
            try:
                cache = config.create_timing_cache(b"")
                config.set_timing_cache(cache, ignore_mismatch=False)
            except Exception as e2:  # noqa: BLE001
                self.note += f"; no timing cache at all ({_one_line(e2)})"
                cache = None
        self.reused = bool(blob)
        self._cache = cache  # must outlive the build

    def save(self, config: Any) -> None:
        """Merge and write the cache back; call it after the plan is written. Never raises (an Exception):
        a failure is kept in `note`."""
        if self.path is None:
            return
        from .._io import write_bytes

        try:
            cache = config.get_timing_cache()
            if cache is None:
                self.note = self.note or "TensorRT returned no timing cache; the file was left as it was"
                return
            with _file_lock(self.path):
                if self.path.is_file():  # another build may have written it meanwhile: keep its entries too
                    try:
                        newest = config.create_timing_cache(self.path.read_bytes())
                        merged = newest is not None and cache.combine(newest, ignore_mismatch=False)  # as attach: same device only
                    except Exception:  # noqa: BLE001 - a corrupt file is replaced by this build's cache
                        merged = False
                    if not merged:
                        self.note = self.note or "the cache file did not match this TensorRT/GPU; it was replaced"
                data = bytes(memoryview(cache.serialize()))
                write_bytes(self.path, data)
                self.saved_bytes = len(data)
        except OSError as e:  # the engine is built: an unwritable cache must not lose it
            self.note = f"the timing cache could not be written to {self.path} ({e.strerror or e}); the engine was kept"
        except Exception as e:  # noqa: BLE001 - same for anything TensorRT raises while serializing
            self.note = f"the timing cache could not be saved to {self.path} ({_one_line(e)}); the engine was kept"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "loaded_bytes": self.loaded_bytes,
                "saved_bytes": self.saved_bytes, "reused": self.reused, **({"note": self.note} if self.note else {})}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__
