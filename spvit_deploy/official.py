"""Import SPViT in the official format (github ziplab/SPViT): a fine-tuned checkpoint -> plain
network + spec (`import_official`, which hands each model family to its importer: DeiT here, Swin in
`official_swin.py`), an official DeiT search-stage file -> spec (`spec_from_search`).

The fine-tuned weights go through the core, not around it: they are placed into a supernet
(qkv = [qk; v], head_probs as the head-mixing logits at temperature 0.01, the BatchNorms, each
trimmed FFN scattered to dense width at its kept units), the gates are pinned to the spec and
`materialize` folds the convolutions. See docs/import-official.md for the semantics.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SpvitError
from .official_common import Source, StateDict, check_depth, parse_indicators, scatter_ffn, state_of
from .spec import CONV_KERNEL, ArchSpec, BlockSpec, load_spec, op_from_code

OFFICIAL_ALPHA = 0.01  # head-mixing temperature of the official UnifiedAttention
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
PLACEHOLDER_KEPT = (
    "placeholder: ffn_kept are positions 0..w-1 of the trimmed FFN, not dense unit indices; the "
    "official checkpoint does not record which units were kept (import with --search-ckpt to record them)"
)
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
_SEARCH_KEY = re.compile(r"blocks\.(\d+)\.mlp\.assigned_indicator_index")
_THRESHOLD_KEY = re.compile(r"blocks\.(\d+)\.attn\.kernel_thresholds")

def _indexed(state: StateDict, pattern: re.Pattern[str]) -> dict[int, torch.Tensor]:
    return {int(m[1]): v for k, v in state.items() if (m := pattern.fullmatch(k))}


def _ops_from_thresholds(state: StateDict, depth: int, where: str) -> tuple[str, ...]:
    """Ops as the official search derives them: cumprod(sigmoid(kernel_thresholds) > 0.5)."""
    thr = _indexed(state, _THRESHOLD_KEY)
    if not thr:
        raise SpvitError(
            f"{where} holds no blocks.<i>.attn.kernel_thresholds (the shipped ffn_indicators/*.pth keep only "
            "FFN indicators); give the ops with --indicators (assigned_indicators of the official *_ft config)"
        )
    ops = []
    for i in range(depth):
        if i not in thr or thr[i].numel() != 3:
            raise SpvitError(f"block {i}: {where} has no 3-gate blocks.{i}.attn.kernel_thresholds")
        gates = (torch.sigmoid(thr[i].flatten()) > 0.5).long()
        ops.append(op_from_code(torch.cumprod(gates, 0).tolist()))
    return tuple(ops)


def spec_from_search(
    search: Source,
    model: str,
    *,
    ops: Sequence[str] | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
) -> ArchSpec:
    """A spec from an official search-stage file: kept FFN units from `assigned_indicator_index`,
    ops from `ops` or else from the file's `kernel_thresholds`."""
    from .models import dims_for, resolve_model_name

    state, where = state_of(search, "search file")
    indicators = _indexed(state, _SEARCH_KEY)
    if not indicators:
        raise SpvitError(
            f"{where} has no blocks.<i>.mlp.assigned_indicator_index; not an official search file "
            "(SPViT_DeiT/ffn_indicators/*.pth or a search-stage checkpoint)"
        )
    name = resolve_model_name(model)
    if num_classes is None and "head.weight" in state:
        num_classes = int(state["head.weight"].shape[0])
    dims = dims_for(model, num_classes=num_classes, img_size=img_size)
    missing = [i for i in range(dims.depth) if i not in indicators]
    if missing:
        raise SpvitError(
            f"block {missing[0]}: {where} has no FFN indicator for it (model '{name}' has {dims.depth} blocks)"
        )
    if max(indicators) >= dims.depth:
        raise SpvitError(
            f"block {dims.depth}: {where} has {max(indicators) + 1} blocks but model '{name}' has {dims.depth}"
        )
    kept = []
    for i in range(dims.depth):
        t = indicators[i].detach().flatten().double()
        if t.numel() != dims.mlp_hidden[i]:
            raise SpvitError(
                f"block {i}: {where} has {t.numel()} FFN indicators but model '{name}' has {dims.mlp_hidden[i]} "
                "hidden units (a search file for another model?)"
            )
        on, off = (t - 1).abs() < 1e-4, t == 0  # the official code keeps nonzero(): exact 0 is off
        if not bool((on | off).all()):
            bad = float(t[~(on | off)][0])
            raise SpvitError(f"block {i}: {where} assigned_indicator_index holds {bad:.4g}, not 0/1")
        kept.append(tuple(int(k) for k in torch.nonzero(on).flatten().tolist()))
    if ops is None:
        ops = _ops_from_thresholds(state, dims.depth, where)
    check_depth(len(ops), dims.depth, name, "the ops list")
    return ArchSpec(
        model=name,
        img_size=img_size or dims.img_size,
        num_classes=dims.num_classes,
        blocks=tuple(BlockSpec(attn=op, ffn_kept=k) for op, k in zip(ops, kept)),
        source=f"official search file {Path(where).name}",
    )


# -- the fine-tuned checkpoint ----------------------------------------------------------------
def _reject_other_formats(state: StateDict, where: str) -> None:
    hints = (
        (("kernel_thresholds", "ffn_thresholds", "assigned_indicator_index"),
         "is a search-stage checkpoint: derive a spec from it with --search-ckpt FILE --spec-out SPEC.json; "
         "only fine-tuned checkpoints are imported"),
        ((".attn.bconv.",), "was rewritten by post_training_optimize_checkpoint.py; import the checkpoint from before"),
        ((".attn.msa.", ".gates."), "is a spvit-deploy supernet checkpoint; use 'spvit-deploy materialize --supernet'"),
        ((".attn.qkv.",), "is a dense (timm/DeiT) checkpoint; use 'spvit-deploy materialize --checkpoint'"),
    )
    for needles, what in hints:
        hit = next((k for k in state if any(n in k for n in needles)), None)
        if hit is not None:
            raise SpvitError(f"{where} {what} (it has {hit})")


def _geometry(state: StateDict, model: str, img_size: int | None, num_classes: int | None, where: str) -> tuple[int, int]:
    """Image size from pos_embed (class token + a square grid), classes from head.weight."""
    from .models import create_dense

    for k in ("pos_embed", "head.weight"):
        if k not in state:
            raise SpvitError(f"{where} has no '{k}'; not an official SPViT DeiT checkpoint")
    patch = int(create_dense(model, device="meta").patch_embed.patch_size[0])
    if state["pos_embed"].ndim != 3:
        raise SpvitError(f"{where}: pos_embed is {tuple(state['pos_embed'].shape)}, expected (1, 1 + N, C)")
    n = int(state["pos_embed"].shape[1]) - 1
    g = math.isqrt(max(n, 0))
    if g * g != n or g == 0:
        raise SpvitError(f"{where}: pos_embed has {n} patch positions, not a square grid plus a class token")
    img = g * patch
    if img_size is not None and img_size != img:
        raise SpvitError(f"--img-size {img_size} does not fit {where}: its pos_embed is a {g}x{g} grid ({img} px)")
    classes = int(state["head.weight"].shape[0])
    if num_classes is not None and num_classes != classes:
        raise SpvitError(f"--num-classes {num_classes} does not fit {where}: its head has {classes} classes")
    return img, classes


def _resolve_spec(
    state: StateDict, model: str, arch: ArchSpec | str | None, indicators: Any, search: Source | None,
    img: int, classes: int,
) -> ArchSpec:
    from .models import dims_for, resolve_model_name, same_model

    name = resolve_model_name(model)
    dims = dims_for(model, num_classes=classes, img_size=img)
    if arch is not None:
        if indicators is not None or search is not None:
            raise SpvitError("give the architecture once: --arch, or --indicators and/or --search-ckpt")
        spec = load_spec(arch) if not isinstance(arch, ArchSpec) else arch
        if not same_model(spec.model, model):
            raise SpvitError(f"the architecture is for model '{spec.model}', not '{model}'; pass the matching --model")
        check_depth(len(spec.blocks), dims.depth, name, "the architecture")
        spec.validate_against(dims.depth, dims.mlp_hidden, where="the architecture")
        return spec.with_overrides(img_size=img, num_classes=classes)
    ops = parse_indicators(indicators) if indicators is not None else None
    if search is not None:
        return spec_from_search(search, model, ops=ops, img_size=img, num_classes=classes)
    if ops is None:
        raise SpvitError("say which architecture the checkpoint has: --arch, --indicators '[[1,0,0],...]' or --search-ckpt")
    check_depth(len(ops), dims.depth, name, "--indicators")
    blocks = []
    for i, op in enumerate(ops):
        fc1 = state.get(f"blocks.{i}.mlp.fc1.weight")
        w = int(fc1.shape[0]) if fc1 is not None else 0  # a missing fc1 is reported by the checker
        if w > dims.mlp_hidden[i]:
            raise SpvitError(
                f"block {i}: the checkpoint's FFN has {w} units, more than model '{name}' ({dims.mlp_hidden[i]})"
            )
        blocks.append(BlockSpec(attn=op, ffn_kept=tuple(range(w))))
    return ArchSpec(
        model=name, img_size=img, num_classes=classes, blocks=tuple(blocks),
        source="official checkpoint + indicators", extra={"ffn_kept": PLACEHOLDER_KEPT},
    )


def _attn_shapes(op: str, C: int, H: int, bias: bool) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Official attention keys (under `attn.`) of an op with their shapes, and the optional ones."""
    d = C // H

    def linear(name: str, out: int, has_bias: bool) -> dict[str, tuple[int, ...]]:
        return {f"{name}.weight": (out, C), **({f"{name}.bias": (out,)} if has_bias else {})}

    if op == "skip":
        return {}, set()
    shapes = {**linear("v", C, bias), **linear("proj", C, True)}
    if op == "msa":
        return {**linear("qk", 2 * C, bias), **shapes}, set()
    bn = "bn_3x3" if op == "conv3x3" else "bn_1x1"
    shapes.update({"head_probs": (H, 9), **{f"{bn}.{k}": (d,) for k in BN_KEYS}, f"{bn}.num_batches_tracked": ()})
    return shapes, {f"{bn}.num_batches_tracked"}


def _looks_like(attn_keys: set[str]) -> tuple[str, str] | None:
    """Which op an official block's attention keys describe, with the evidence."""
    has = {p: any(k.startswith(p) for k in attn_keys) for p in ("qk.", "head_probs", "bn_3x3.", "bn_1x1.")}
    if not attn_keys:
        return "skip", "no attention weights"
    if has["qk."] and not (has["head_probs"] or has["bn_3x3."] or has["bn_1x1."]):
        return "msa", "attn.qk and no attn.head_probs"
    if has["head_probs"] and not has["qk."] and has["bn_3x3."] != has["bn_1x1."]:
        bn = "bn_3x3" if has["bn_3x3."] else "bn_1x1"
        return ("conv3x3" if has["bn_3x3."] else "conv1x1"), f"attn.head_probs and attn.{bn}, no attn.qk"
    return None


def _why_unexpected(key: str, op: str) -> str:
    if key.startswith("qk."):
        return f"a {op} block has no qk (only MSA blocks keep q and k)"
    return f"it is not part of an official {op} block"


def _check_block(i: int, op: str, width: int, keys: dict[str, torch.Tensor], own: dict[str, tuple[int, ...]],
                 C: int, H: int, bias: bool) -> None:
    pre = f"blocks.{i}."
    attn_shapes, optional = _attn_shapes(op, C, H, bias)
    got_attn = {k[5:] for k in keys if k.startswith("attn.")}
    missing = sorted(set(attn_shapes) - optional - got_attn)
    unexpected = sorted(got_attn - set(attn_shapes))
    if missing or unexpected:
        seen = _looks_like(got_attn)
        if seen is not None and seen[0] != op:
            raise SpvitError(f"block {i}: the architecture says {op} but the checkpoint's block is {seen[0]} ({seen[1]})")
        if missing:
            raise SpvitError(f"block {i} ({op}): the checkpoint lacks {pre}attn.{missing[0]}, which a {op} block needs")
        raise SpvitError(f"block {i} ({op}): unexpected {pre}attn.{unexpected[0]}; {_why_unexpected(unexpected[0], op)}")
    mlp_shapes = {
        "mlp.fc1.weight": (width, C), "mlp.fc1.bias": (width,), "mlp.fc2.weight": (C, width), "mlp.fc2.bias": (C,)
    }
    want = {**own, **{f"attn.{k}": s for k, s in attn_shapes.items()}, **mlp_shapes}
    rest = sorted(set(keys) - set(want)) + sorted(set(want) - set(keys) - {f"attn.{k}" for k in optional})
    if rest:
        what = "unexpected" if rest[0] in keys else "missing"
        raise SpvitError(f"block {i} ({op}): {what} {pre}{rest[0]} in the checkpoint")
    fc1, fc2 = keys["mlp.fc1.weight"], keys["mlp.fc2.weight"]
    if fc1.ndim == 2 and fc1.shape[0] != width:
        raise SpvitError(f"block {i}: FFN width differs: the checkpoint's mlp.fc1 has {fc1.shape[0]} units, "
                         f"the architecture keeps {width}")
    if fc2.ndim == 2 and fc2.shape[1] != fc1.shape[0]:
        raise SpvitError(f"block {i}: FFN width differs: mlp.fc1 has {fc1.shape[0]} units but mlp.fc2 takes {fc2.shape[1]}")
    for k, shape in want.items():
        if k in keys and tuple(keys[k].shape) != tuple(shape):
            raise SpvitError(f"block {i} ({op}): {pre}{k} is {tuple(keys[k].shape)}, expected {tuple(shape)}")


def check_official_state(state: StateDict, spec: ArchSpec, dense: nn.Module, where: str = "checkpoint") -> None:
    """Raise a one-line `SpvitError` at the first place `state` does not fit `spec` on `dense`'s model."""
    from .models import vit_dims

    dims = vit_dims(dense)
    own = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    glob = {k: s for k, s in own.items() if not k.startswith("blocks.")}
    missing = [k for k in glob if k not in state]
    unexpected = [k for k in state if not k.startswith("blocks.") and k not in glob]
    if missing or unexpected:
        k = (missing or unexpected)[0]
        raise SpvitError(f"{where} does not fit model '{spec.model}': {'missing' if missing else 'unexpected'} key {k}")
    for k, s in glob.items():
        if tuple(state[k].shape) != s:
            raise SpvitError(f"{where} does not fit model '{spec.model}': {k} is {tuple(state[k].shape)}, "
                             f"the model wants {s}; check --model")
    per_block: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        if (m := _BLOCK_KEY.fullmatch(k)) is None:
            if k.startswith("blocks."):
                raise SpvitError(f"{where}: unexpected key {k}")
            continue
        per_block.setdefault(int(m[1]), {})[m[2]] = v
    if per_block and max(per_block) >= dims.depth:
        raise SpvitError(
            f"block {dims.depth}: {where} has {max(per_block) + 1} blocks but model '{spec.model}' has {dims.depth}"
        )
    for i, b in enumerate(spec.blocks):
        if i not in per_block:
            raise SpvitError(f"block {i}: {where} has no weights for it ({len(per_block)} blocks, model has {dims.depth})")
        block_own = {k[len(f"blocks.{i}."):]: s for k, s in own.items()
                     if k.startswith(f"blocks.{i}.") and not k.startswith((f"blocks.{i}.attn.", f"blocks.{i}.mlp."))}
        _check_block(i, b.attn, b.ffn_width, per_block[i], block_own, dims.embed_dim, dims.num_heads, dims.qkv_bias)


def _reject_skip(spec: ArchSpec) -> None:
    skips = [i for i, b in enumerate(spec.blocks) if b.attn == "skip"]
    if skips:
        raise SpvitError(
            f"block {skips[0]} is a skip block: the official fine-tuning code adds the normalised input back for "
            "every token there (x = x), which the plain network's skip (class token only) does not compute; "
            "refusing to import a different function"
        )


@torch.no_grad()
def _load_into_supernet(state: StateDict, spec: ArchSpec, dense: nn.Module) -> nn.Module:
    """Official weights -> the dense model's parameters -> supernet (head logits and BatchNorms)."""
    from .supernet import to_supernet

    C = dense.embed_dim
    new = {}
    for k, v in dense.state_dict().items():
        m = re.fullmatch(r"blocks\.(\d+)\.(attn|mlp)\.(.+)", k)
        if m is None:
            new[k] = state[k]
            continue
        i, part, rest = int(m[1]), m[2], m[3]
        b, pre = spec.blocks[i], f"blocks.{i}.{m[2]}."
        if part == "attn" and rest.startswith("qkv."):
            val = state[f"{pre}v.{rest[4:]}"]
            qk = state[f"{pre}qk.{rest[4:]}"] if b.attn == "msa" else val.new_zeros((2 * C, *val.shape[1:]))
            new[k] = torch.cat([qk, val])  # conv blocks never read the q/k rows
        elif part == "mlp" and rest in ("fc1.weight", "fc1.bias", "fc2.weight"):
            new[k] = scatter_ffn(state[pre + rest], v, b.ffn_kept, columns=rest == "fc2.weight")
        else:
            new[k] = state[pre + rest]
    unset = [n for n, _ in dense.named_buffers() if n not in new]
    if unset:
        raise SpvitError(f"model '{spec.model}' has buffers outside its state dict ({unset[0]}); not supported here")
    dense.load_state_dict(new, strict=True)
    supernet = to_supernet(dense, alpha=OFFICIAL_ALPHA)
    for i, (blk, b) in enumerate(zip(supernet.blocks, spec.blocks)):
        if b.attn in CONV_KERNEL:
            pre = f"blocks.{i}.attn."
            blk.attn.head_logits.copy_(state[pre + "head_probs"])
            bn = blk.attn.bn(b.attn)
            src = "bn_3x3" if b.attn == "conv3x3" else "bn_1x1"
            for name in BN_KEYS:
                getattr(bn, name).copy_(state[f"{pre}{src}.{name}"])
    return supernet


def import_official(
    checkpoint: Source,
    model: str,
    *,
    arch: ArchSpec | str | None = None,
    indicators: str | Sequence[Any] | None = None,
    search: Source | None = None,
    img_size: int | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, ArchSpec]:
    """Official fine-tuned checkpoint -> (plain network in eval mode, its spec).

    The ops come from `arch` (paper:<name>, a spec or its path), or `indicators` (official gate codes),
    with kept FFN units from `search` (an official search file) if given; image size and class count
    come from the checkpoint.
    """
    import importlib

    from .families import family_of
    from .models import create_dense

    state, where = state_of(checkpoint, "checkpoint")
    _reject_other_formats(state, where)
    fam = family_of(create_dense(model, device="meta"), model)
    module, func = fam.official_importer.split(":")
    return getattr(importlib.import_module(module), func)(state, where, model, arch=arch, indicators=indicators,
                                                          search=search, img_size=img_size, num_classes=num_classes)


def import_official_vit(state: StateDict, where: str, model: str, *, arch: ArchSpec | str | None = None,
                        indicators: str | Sequence[Any] | None = None, search: Source | None = None,
                        img_size: int | None = None, num_classes: int | None = None) -> tuple[nn.Module, ArchSpec]:
    """An official SPViT-DeiT fine-tuned state dict -> (plain network in eval mode, its spec)."""
    from .materialization import materialize
    from .models import create_dense
    from .supernet import fix_gates

    img, classes = _geometry(state, model, img_size, num_classes, where)
    spec = _resolve_spec(state, model, arch, indicators, search, img, classes)
    # no random init: every weight is overwritten from the checkpoint (checked in _load_into_supernet)
    dense = create_dense(model, num_classes=classes, img_size=img, device="meta").to_empty(device="cpu")
    check_official_state(state, spec, dense, where)
    _reject_skip(spec)
    supernet = _load_into_supernet(state, spec, dense).eval()
    return materialize(fix_gates(supernet, spec), spec), spec
