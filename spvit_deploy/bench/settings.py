"""How a benchmark times (`BenchSettings`) and the results file's version: shared by the benchmark,
its report and the CLI, so none of them imports another for its settings."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import SpvitError
from .backends import parse_backends

VARIANTS = ("dense", "compressed")
RESULTS_VERSION = 1


@dataclass(frozen=True)
class BenchSettings:
    """How to time: backends, batch sizes, threads, iterations (per model), warm-up, interleaving rounds."""

    backends: tuple[str, ...] = ("onnxruntime",)
    batches: tuple[int, ...] = (1, 16)
    threads: int | None = None  # None: every CPU this process may use
    iters: int = 30
    warmup: int = 3
    rounds: int = 5
    pad_widths: int | None = None
    opset: int = 18
    seed: int = 0
    profile: bool = False  # also profile both ONNX graphs per batch size (ONNX Runtime's profiler)

    def __post_init__(self) -> None:
        parse_backends(list(self.backends))
        if not self.batches or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in self.batches):
            raise SpvitError(f"batch sizes must be positive integers, got {list(self.batches)}")
        for name, v, lo in (("iters", self.iters, 1), ("warmup", self.warmup, 0), ("rounds", self.rounds, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise SpvitError(f"--{name} must be an integer >= {lo}, got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise SpvitError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.profile and "onnxruntime" not in self.backends:
            raise SpvitError("--profile reads ONNX Runtime's profiler: add onnxruntime to --backends")

    @property
    def resolved_threads(self) -> int:
        from ..host import usable_cpus

        return self.threads or usable_cpus()

    @property
    def block(self) -> int:
        """Iterations per interleaved block."""
        return max(1, math.ceil(self.iters / self.rounds))


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise SpvitError(f"--batch takes comma-separated integers such as 1,16, got '{text}'") from None
    if not out or any(b < 1 for b in out):
        raise SpvitError(f"--batch takes positive integers such as 1,16, got '{text}'")
    return tuple(dict.fromkeys(out))


def settings_dict(settings: BenchSettings) -> dict[str, Any]:
    d = asdict(settings)
    d["threads"] = settings.resolved_threads
    d["block"] = settings.block
    return d
