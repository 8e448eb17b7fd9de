"""`spvit-deploy export-triton`: a run folder -> a Triton Inference Server model repository.

Python: `spvit_deploy.serve.export_triton(run, repo, backend=..., dense=True)`; see `spvit_deploy.serve`.
"""
from __future__ import annotations

import argparse

from .common import add_json_option, print_json


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="write a Triton model repository (config.pbtxt, model, labels) from a run")
    p.add_argument("--run", required=True, help="run folder (arch.json + model.safetensors + meta.json)")
    p.add_argument("--repo", required=True, help="model repository folder to write into")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime (model.onnx) or tensorrt (model.plan)")
    p.add_argument("--name", default=None, help="model name (default: <model>_spvit)")
    p.add_argument("--dense", action="store_true", help="also write the dense model as <model>_dense, to compare")
    src = p.add_argument_group("model files (default: export the run to ONNX)")
    src.add_argument("--onnx", default=None, help="use this ONNX file for the compressed model")
    src.add_argument("--dense-onnx", default=None, help="use this ONNX file for the dense model")
    src.add_argument("--dense-checkpoint", default=None,
                     help="dense weights to export (default: the checkpoint the run records, else random)")
    src.add_argument("--engine", default=None, help="TensorRT engine (model.plan + its model.json sidecar)")
    src.add_argument("--dense-engine", default=None, help="TensorRT engine of the dense model")
    cfg = p.add_argument_group("serving")
    cfg.add_argument("--max-batch", type=int, default=None,
                     help="max_batch_size (default 64, capped by an engine's profile max)")
    cfg.add_argument("--preferred", default=None,
                     help="preferred batch sizes, comma separated (default: powers of two from max/8 to max)")
    cfg.add_argument("--max-queue-delay-us", type=int, default=100, help="dynamic batcher queue delay")
    cfg.add_argument("--instances", type=int, default=1, help="model instances (instance_group count)")
    cfg.add_argument("--kind", default="gpu", help="gpu or cpu instances (cpu: ONNX Runtime only)")
    p.add_argument("--labels", default=None, help="class names, one a line (default: ImageNet's for 1000 classes)")
    p.add_argument("--force", action="store_true", help="replace model folders that exist")
    add_json_option(p)
    return p


def _sizes(text: str | None) -> list[int] | None:
    from ..errors import SpvitError

    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SpvitError(f"--preferred '{text}' must be comma-separated integers, e.g. 8,16,32") from None


def run(args: argparse.Namespace) -> int:
    from ..serve import export_triton

    models = export_triton(
        args.run, args.repo, backend=args.backend, name=args.name, dense=args.dense,
        onnx=args.onnx, dense_onnx=args.dense_onnx, engine=args.engine, dense_engine=args.dense_engine,
        dense_checkpoint=args.dense_checkpoint, labels=args.labels, max_batch=args.max_batch,
        preferred=_sizes(args.preferred), max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances, kind=args.kind.lower(), force=args.force,
    )
    if args.json:
        print_json([m.to_dict() for m in models])
        return 0
    for m in models:
        io = ", ".join(f"{t.name} {t.dtype[5:]} {list(t.shape[1:])}" for t in m.inputs)
        out = ", ".join(f"{t.name} {t.dtype[5:]} {list(t.shape[1:])}" for t in m.outputs)
        print(f"wrote {m.path}: {m.platform}, max_batch_size {m.max_batch_size}, "
              f"preferred {list(m.preferred_batch_sizes)}, {m.instances} x {m.kind}; {io} -> {out}")
        for note in m.notes:
            print(f"  note: {note}")
    return 0
