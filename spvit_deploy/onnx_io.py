"""ONNX files and their `spvit.*` metadata: load, save (atomically), read and update the metadata.

The one place every stage that reads or writes ONNX (export, the graph passes, the engine builder)
goes through. Metadata values are JSON; a value that is not JSON is returned as its raw string.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .errors import SpvitError, require

META_PREFIX = "spvit."  # every deploy metadata key starts with it (values are JSON)
MAX_PROTO_BYTES = 2**31 - 2**24  # protobuf's 2 GiB single-file limit, with headroom


def load_model(path: str | os.PathLike[str], *, load_external_data: bool = True) -> Any:
    """An ONNX ModelProto from `path`, with a one-line error for a missing or damaged file."""
    onnx = require("onnx", "onnx")
    p = Path(path)
    if not p.is_file():
        raise SpvitError(f"ONNX file '{p}' does not exist; export one with 'spvit-deploy export'")
    try:
        return onnx.load(str(p), load_external_data=load_external_data)
    except Exception as e:
        raise SpvitError(f"cannot read '{p}' as ONNX ({type(e).__name__}); the file is damaged or not ONNX") from None


def save_model(proto: Any, path: str | os.PathLike[str]) -> Path:
    """Write `proto` atomically (single file; graphs over protobuf's 2 GiB are refused)."""
    onnx = require("onnx", "onnx")
    from ._io import atomic_path

    if proto.ByteSize() > MAX_PROTO_BYTES:
        raise SpvitError("the graph exceeds ONNX's 2 GiB single-file limit")
    target = Path(path)
    if target.is_dir():
        raise SpvitError(f"'{target}' is a folder; give a file name such as model.onnx")
    with atomic_path(target) as tmp:
        onnx.save(proto, str(tmp))
    return target


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_metadata(proto: Any) -> dict[str, Any]:
    """The `spvit.*` metadata of a ModelProto, JSON-decoded, without the prefix."""
    out: dict[str, Any] = {}
    for p in proto.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except json.JSONDecodeError:
                out[p.key[len(META_PREFIX):]] = p.value
    return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `spvit.*` metadata of an ONNX file (its weights are not read)."""
    return get_metadata(load_model(path, load_external_data=False))


def update_metadata(proto: Any, **values: Any) -> None:
    """Set `spvit.<key>` metadata entries (JSON values), keeping every other entry."""
    keys = {META_PREFIX + k for k in values}
    keep = [p for p in proto.metadata_props if p.key not in keys]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, json.dumps(v)


def infer_shapes(proto: Any) -> Any:
    """`proto` with ONNX shape inference applied, or `proto` itself when inference fails."""
    onnx = require("onnx", "onnx")
    try:
        return onnx.shape_inference.infer_shapes(proto)
    except Exception:
        return proto


def check_model(proto: Any, what: str) -> None:
    """`onnx.checker` on `proto`; a failure is one line naming `what` ("the fp16 graph")."""
    onnx = require("onnx", "onnx")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise SpvitError(f"{what} fails onnx.checker: {str(e).strip().splitlines()[0]}") from None


def copy_model_info(src: Any, dst: Any) -> Any:
    """Carry metadata, producer and doc string from `src` to a rebuilt `dst`."""
    dst.producer_name = src.producer_name or "spvit-deploy"
    dst.producer_version = src.producer_version
    dst.doc_string = src.doc_string
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    return dst
