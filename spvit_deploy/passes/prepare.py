"""The graph a TensorRT engine is built from, made of ONNX-to-ONNX passes: the fp16 conversion
(`fp16`), then the plugin pass (`plugins`). `export --fp16/--plugins` and `build-engine` compose them
through `transform_graph`; nothing here needs TensorRT.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import SpvitError


def transform_graph(proto: Any, fp16: bool = False, plugins: bool = False,
                    plugin_kernels: tuple[int, ...] = (1, 3), fp16_softmax: bool = False) -> tuple[Any, dict[str, Any]]:
    """fp16 conversion, then the plugin pass (either may be off; plugins only for conv blocks of the
    kernel sizes in `plugin_kernels`); returns the graph and what was done. `fp16_softmax` runs Softmax
    in fp16 too (no Cast pair around it, so TensorRT can fuse attention; check the accuracy)."""
    from .fp16 import FP32_OPS, convert_to_fp16, graph_precision
    from .plugins import PLUGIN_OP, insert_conv_attn_plugins

    done: dict[str, Any] = {}
    if fp16 and graph_precision(proto) == "fp32":
        proto, rep = convert_to_fp16(proto, fp32_ops=FP32_OPS - {"Softmax"} if fp16_softmax else None)
        done["fp16"] = {**rep.to_dict(), **({"softmax": "fp16"} if fp16_softmax else {})}
    if plugins and not any(n.op_type == PLUGIN_OP for n in proto.graph.node):
        proto, prep = insert_conv_attn_plugins(proto, kernel_sizes=tuple(plugin_kernels))
        done["plugins"] = prep.to_dict()
    return proto, done


def transform_file(src: str | os.PathLike[str], out: str | os.PathLike[str], *, fp16: bool = False,
                   plugins: bool = False, plugin_kernels: tuple[int, ...] = (1, 3)) -> dict[str, Any]:
    """`transform_graph` from the ONNX file `src` to `out` (written atomically); returns what was done."""
    from ..onnx_io import load_model, save_model

    new, done = transform_graph(load_model(src), fp16=fp16, plugins=plugins, plugin_kernels=plugin_kernels)
    save_model(new, out)
    return done


def export_for_engine(em: Any, out: str | os.PathLike[str], *, fp16: bool = False, plugins: bool = False,
                      **export_kw: Any) -> Any:
    """`export_onnx` of a `SourcedModel` (checked against PyTorch in fp32), then the fp16 / plugin passes,
    written atomically to `out`; returns the export report for `out`, with `engine_passes` in its metadata."""
    import dataclasses
    import tempfile

    from ..export import export_onnx
    from ..onnx_io import load_model

    with tempfile.TemporaryDirectory(prefix="spvit-export-") as tmp:
        rep = export_onnx(em.module, Path(tmp) / "fp32.onnx", spec=em.spec, variant=em.variant, **export_kw)
        done = transform_file(Path(tmp) / "fp32.onnx", out, fp16=fp16, plugins=plugins)
    counts: dict[str, int] = {}
    for n in load_model(out).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dataclasses.replace(rep, path=str(out), size_bytes=Path(out).stat().st_size, op_counts=dict(sorted(counts.items())),
                               metadata={**rep.metadata, "engine_passes": done})


def prepare_graph(out_onnx: str | os.PathLike[str], *, run: str | os.PathLike[str] | None = None,
                  onnx: str | os.PathLike[str] | None = None, fp16: bool = False, plugins: bool = False,
                  plugin_kernels: tuple[int, ...] = (1, 3), opset: int | None = None,
                  fp16_softmax: bool = False) -> tuple[Path, dict[str, Any]]:
    """The graph to build from: `onnx` as is when no pass is asked for, else a transformed copy (or the
    export of `run`) written atomically to `out_onnx`. Returns its path and what was done."""
    from ..onnx_io import load_model, save_model

    if (run is None) == (onnx is None):
        raise SpvitError("give exactly one of --run RUN_DIR or --onnx MODEL.onnx")
    info: dict[str, Any] = {}
    if run is not None:
        import tempfile

        from ..export import export_onnx, load_export_model

        em = load_export_model(run=run)
        with tempfile.TemporaryDirectory(prefix="spvit-engine-") as tmp:
            kw = {"opset": opset} if opset else {}
            rep = export_onnx(em.module, Path(tmp) / "model.onnx", spec=em.spec, **kw)
            info["export"] = {"run": str(run), "parity_max_abs_diff": rep.max_abs_diff}
            proto = load_model(Path(tmp) / "model.onnx")
    else:
        proto = load_model(onnx)
        info["source"] = str(onnx)
    new, done = transform_graph(proto, fp16=fp16, plugins=plugins, plugin_kernels=plugin_kernels,
                                fp16_softmax=fp16_softmax)
    info.update(done)
    if run is None and not done:
        return Path(onnx), info  # type: ignore[arg-type]
    if onnx is not None and Path(out_onnx).resolve() == Path(onnx).resolve():
        raise SpvitError(f"the transformed graph would overwrite its source '{onnx}'; choose another --out")
    return save_model(new, out_onnx), info
