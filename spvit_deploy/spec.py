"""The architecture spec: the versioned JSON contract between search and materialize.

An `ArchSpec` names the timm model, its family, image size and class count, and per block
the attention op (msa / conv3x3 / conv1x1 / skip) and the kept FFN hidden units.

Schema 2 adds `family` ("vit" or "swin"; a schema-1 spec is a class-token ViT's), `skip_branch`
(what a skip block's branch returns: "zero", the default and what the search trains, or "input",
x + LN1(x), what official SPViT fine-tuning trained; written only when not "zero") and
`conv_scope` (where the conv ops run: "full_map" for Swin, written only when set).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import SpvitError
from .families.base import CONV_KERNEL  # noqa: F401  (re-exported)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SKIP_BRANCHES = ("zero", "input")
OPS = ("msa", "conv3x3", "conv1x1", "skip")
OP_CODES: dict[str, tuple[int, int, int]] = {
    "skip": (0, 0, 0),
    "conv1x1": (1, 0, 0),
    "conv3x3": (1, 1, 0),
    "msa": (1, 1, 1),
}
PAPER_ARCHS = ("deit_tiny", "deit_small", "deit_base", "deit_base_11g", "swin_tiny", "swin_small", "swin_base")


def op_from_code(code: Any) -> str:
    """`[1, 1, 0]` -> `conv3x3`; the official configs write ops as nested gate codes."""
    t = tuple(int(c) for c in code)
    for op, c in OP_CODES.items():
        if c == t:
            return op
    raise SpvitError(f"indicator {list(code)} is not one of {list(OP_CODES.values())} (nested gates)")


@dataclass(frozen=True)
class BlockSpec:
    """One transformer block: its attention op and the FFN hidden units it keeps."""

    attn: str
    ffn_kept: tuple[int, ...]

    @property
    def ffn_width(self) -> int:
        return len(self.ffn_kept)


@dataclass(frozen=True)
class ArchSpec:
    """A derived architecture; `model` is a timm model name."""

    model: str
    img_size: int
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    source: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    family: str = "vit"
    skip_branch: str = "zero"
    conv_scope: str = ""

    @property
    def ops(self) -> list[str]:
        return [b.attn for b in self.blocks]

    def with_overrides(self, img_size: int | None = None, num_classes: int | None = None) -> "ArchSpec":
        return replace(
            self,
            img_size=self.img_size if img_size is None else img_size,
            num_classes=self.num_classes if num_classes is None else num_classes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "family": self.family,
            **({"skip_branch": self.skip_branch} if self.skip_branch != "zero" else {}),
            **({"conv_scope": self.conv_scope} if self.conv_scope else {}),
            "model": self.model,
            "img_size": self.img_size,
            "num_classes": self.num_classes,
            "source": self.source,
            "blocks": [
                {"attn": b.attn, "ffn_width": b.ffn_width, "ffn_kept": list(b.ffn_kept)}
                for b in self.blocks
            ],
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "ArchSpec":
        if not isinstance(d, dict):
            raise SpvitError(f"{where}: expected a JSON object, got {type(d).__name__}")
        known = {"schema_version", "family", "skip_branch", "conv_scope", "model", "img_size", "num_classes",
                 "source", "blocks", "extra"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpvitError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise SpvitError(
                f"{where}: schema_version {version!r} is not supported (this spvit-deploy reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); regenerate the spec with this version"
            )
        if version == 1 and set(d) & {"family", "skip_branch", "conv_scope"}:
            raise SpvitError(f"{where}: 'family', 'skip_branch' and 'conv_scope' need schema_version 2")
        family, skip = d.get("family", "vit"), d.get("skip_branch", "zero")
        if family not in ("vit", "swin"):
            raise SpvitError(f"{where}: unknown family {family!r}; use 'vit' or 'swin'")
        if skip not in SKIP_BRANCHES:
            raise SpvitError(f"{where}: skip_branch {skip!r} is not one of {list(SKIP_BRANCHES)}")
        if d.get("conv_scope", "") not in ("", "full_map"):
            raise SpvitError(f"{where}: conv_scope {d['conv_scope']!r} is not supported; use 'full_map'")
        for key, typ in (("model", str), ("img_size", int), ("num_classes", int), ("blocks", list)):
            if not isinstance(d.get(key), typ) or isinstance(d.get(key), bool):
                raise SpvitError(f"{where}: '{key}' must be a {typ.__name__}")
        if d["img_size"] <= 0 or d["num_classes"] <= 0:
            raise SpvitError(f"{where}: img_size and num_classes must be positive")
        blocks = []
        for i, b in enumerate(d["blocks"]):
            if not isinstance(b, dict) or "attn" not in b or "ffn_kept" not in b:
                raise SpvitError(f"{where}: block {i} needs 'attn' and 'ffn_kept'")
            if b["attn"] not in OPS:
                raise SpvitError(f"{where}: block {i} has unknown op '{b['attn']}'; use one of {list(OPS)}")
            kept = b["ffn_kept"]
            if not isinstance(kept, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in kept):
                raise SpvitError(f"{where}: block {i} 'ffn_kept' must be a list of integers")
            if len(set(kept)) != len(kept) or kept != sorted(kept):
                raise SpvitError(f"{where}: block {i} 'ffn_kept' must be sorted and without repeats")
            if kept and kept[0] < 0:
                raise SpvitError(f"{where}: block {i} 'ffn_kept' has a negative index {kept[0]}")
            if "ffn_width" in b and b["ffn_width"] != len(kept):
                raise SpvitError(f"{where}: block {i} 'ffn_width' {b['ffn_width']} != len(ffn_kept) {len(kept)}")
            blocks.append(BlockSpec(attn=b["attn"], ffn_kept=tuple(kept)))
        return cls(
            model=d["model"],
            img_size=d["img_size"],
            num_classes=d["num_classes"],
            blocks=tuple(blocks),
            source=str(d.get("source", "")),
            extra=dict(d.get("extra", {})),
            family=family,
            skip_branch=skip,
            conv_scope=str(d.get("conv_scope", "")),
        )

    def validate_against(self, depth: int, mlp_hidden: tuple[int, ...] | list[int], where: str = "spec") -> None:
        """Check depth and FFN indices against a model's dense dimensions."""
        if len(self.blocks) != depth:
            raise SpvitError(f"{where}: has {len(self.blocks)} blocks but model '{self.model}' has {depth}")
        for i, (b, w) in enumerate(zip(self.blocks, mlp_hidden)):
            if b.ffn_kept and b.ffn_kept[-1] >= w:
                raise SpvitError(
                    f"{where}: block {i} keeps FFN unit {b.ffn_kept[-1]} but the dense FFN has {w} units"
                )

    def save(self, path: str | os.PathLike[str]) -> None:
        from ._io import write_json

        write_json(path, self.to_dict())


def load_paper_arch(name: str) -> ArchSpec:
    """A published SPViT architecture (shipped as package data)."""
    raw = json.loads(resources.files("spvit_deploy").joinpath("data/spvit_published_archs.json").read_text())
    if name not in raw["archs"] or name not in PAPER_ARCHS:
        raise SpvitError(f"no published architecture 'paper:{name}'; available: {', '.join(PAPER_ARCHS)}")
    a = raw["archs"][name]
    swin = name.startswith("swin")
    return ArchSpec(
        model=a["timm_model"],
        img_size=224,
        num_classes=1000,
        blocks=tuple(BlockSpec(attn=b["attn"], ffn_kept=tuple(b["ffn_kept"])) for b in a["blocks"]),
        source=f"paper:{name} ({a['config']})",
        # official fine-tuning trained Swin skip blocks as x + LN1(x) (SPVIT-SWIN.md section 2)
        family="swin" if swin else "vit",
        skip_branch="input" if swin else "zero",
        conv_scope="full_map" if swin else "",
    )


def load_spec(ref: str | os.PathLike[str]) -> ArchSpec:
    """Load `paper:<name>`, a spec JSON file, or a run folder's `arch.json`."""
    s = str(ref)
    if s.startswith("paper:"):
        return load_paper_arch(s.split(":", 1)[1])
    p = Path(s)
    if p.is_dir():
        p = p / "arch.json"
    if not p.is_file():
        raise SpvitError(f"architecture spec '{s}' not found; give a JSON file, a run folder or paper:<name>")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpvitError(f"{p}: not valid JSON ({e.msg if hasattr(e, 'msg') else e}); fix or regenerate the spec") from None
    return ArchSpec.from_dict(d, where=str(p))


def resolve_spec(
    arch: ArchSpec | str | os.PathLike[str],
    model: str | None = None,
    *,
    img_size: int | None = None,
    num_classes: int | None = None,
) -> ArchSpec:
    """The spec `arch` names (an `ArchSpec`, `paper:<name>`, a JSON file or a run folder), with `img_size`
    and `num_classes` replaced when given, checked to be for `model` when given."""
    spec = arch if isinstance(arch, ArchSpec) else load_spec(arch)
    spec = spec.with_overrides(img_size=img_size, num_classes=num_classes)
    if model is not None:
        from .models import same_model

        if not same_model(model, spec.model):
            raise SpvitError(f"spec is for model '{spec.model}', not '{model}'; pass the matching --model")
    return spec
