"""Runners: load a model for one backend and run it, all with `infer(feed) -> outputs` (Polygraphy-style).

Feeds and outputs are dicts of numpy arrays keyed by tensor name (`input` -> `logits`), so one
comparator checks any two runners.
"""
from __future__ import annotations

import os
from typing import Any, Protocol, Sequence

import numpy as np


class Runner(Protocol):
    """Anything that maps named numpy inputs to named numpy outputs."""

    name: str

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class OnnxRuntimeRunner:
    """An ONNX graph in ONNX Runtime, on the given execution providers (CPU by default)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        from ..export.ort import ort_session

        self.name = f"onnxruntime[{','.join(p.removesuffix('ExecutionProvider') for p in providers)}]"
        self.session = ort_session(path, threads=threads, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def close(self) -> None:
        self.session = None


class TorchRunner:
    """A PyTorch module in eager mode (fp32), `input` -> `logits`."""

    def __init__(self, model: Any, threads: int | None = None, device: str = "cpu",
                 input_name: str = "input", output_name: str = "logits") -> None:
        import torch

        if threads:
            torch.set_num_threads(int(threads))  # process-wide: one TorchRunner per process when timing
        self.name = f"torch[{device}]"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_name, self.output_name = input_name, output_name

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> "TorchRunner":
        """Load a module pickled with `torch.save(module, path)` by this package (trusted file)."""
        import torch

        return cls(torch.load(str(path), map_location=device, weights_only=False), threads, device)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            y = self.model(torch.from_numpy(feed[self.input_name]).to(self.device))
            if self.device.type == "cuda":
                torch.cuda.synchronize()
        return {self.output_name: y.float().cpu().numpy()}

    def close(self) -> None:
        self.model = None
