"""Import SPViT-Swin in the official format (github ziplab/SPViT, `SPViT_Swin/`): a fine-tuned
checkpoint -> plain network + spec. `official.import_official` sends Swin models here.

The semantics are SPVIT-SWIN.md's, checked against the official code at runtime there:
- keys: MSA blocks hold `attn.qk` (q then k) and `attn.v` (merged into timm's `attn.qkv` = [qk; v]),
  `attn.proj` and the bias table; conv blocks `attn.v`, `attn.proj`, `attn.head_probs` (H x 9) and
  `attn.bn_1x1.*` or `attn.bn_3x3.*`; skip blocks no `attn.*`; `attn_mask` and
  `relative_position_index` are dropped (timm recomputes them); official checkpoints downsample at
  the end of a stage, timm at the start (`layers.i.downsample` -> `layers.{i+1}.downsample`);
  `head.*` -> `head.fc.*`;
- conv kernels from head_probs at alpha 100 with column 0 the centre (the Swin family's constants),
  on the full unshifted map, BatchNorm folded by `materialize`;
- a skip block computes x + LN1(x): the spec says `skip_branch: input`.
The official `post_training_optimize_checkpoint.py` is the DeiT script and wrong for Swin; it is
never used (and its output, with `attn.bconv.*` keys, is refused).
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import nn

from .errors import SpvitError
from .spec import CONV_KERNEL, ArchSpec, BlockSpec, load_spec

_BLOCK = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)")
BN_KEYS = ("weight", "bias", "running_mean", "running_var")
PLACEHOLDER_KEPT = (
    "placeholder: ffn_kept are positions 0..w-1 of the trimmed FFN, not dense unit indices; the "
    "official checkpoint does not record which units were kept (import with --search-ckpt to record them)"
)


def _attn_shapes(op: str, C: int, H: int, table: int) -> dict[str, tuple[int, ...]]:
    d = C // H
    if op == "skip":
        return {}
    shapes = {"v.weight": (C, C), "v.bias": (C,), "proj.weight": (C, C), "proj.bias": (C,)}
    if op == "msa":
        return {"qk.weight": (2 * C, C), "qk.bias": (2 * C,), **shapes, "relative_position_bias_table": (table, H)}
    bn = "bn_3x3" if op == "conv3x3" else "bn_1x1"
    return {**shapes, "head_probs": (H, 9), **{f"{bn}.{k}": (d,) for k in BN_KEYS}}


def _seen_op(attn_keys: set[str]) -> str | None:
    if not attn_keys:
        return "skip"
    if any(k.startswith("qk.") for k in attn_keys):
        return "msa"
    if any(k.startswith("bn_3x3.") for k in attn_keys):
        return "conv3x3"
    if any(k.startswith("bn_1x1.") for k in attn_keys):
        return "conv1x1"
    return None


def flatten_stage_indicators(value: Any) -> Any:
    """The official Swin configs nest gate codes per stage ([[[1,0,0],[0,0,0]], [[1,1,1], ...], ...]);
    one flat list per block, in block order."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(s, (list, tuple)) and s and all(isinstance(c, (list, tuple)) for c in s) for s in value):
        return [c for stage in value for c in stage]
    return value


def check_official_swin_state(state: dict[str, torch.Tensor], spec: ArchSpec, dense: nn.Module, paths: list[str],
                              where: str) -> None:
    """Raise a one-line `SpvitError` at the first key or block of `state` that does not fit `spec`."""
    own = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    glob = {k: s for k, s in own.items() if _BLOCK.fullmatch(k) is None}
    for k, s in glob.items():
        if k not in state:
            raise SpvitError(f"{where} does not fit model '{spec.model}': missing key {k}")
        if tuple(state[k].shape) != s:
            raise SpvitError(f"{where} does not fit model '{spec.model}': {k} is {tuple(state[k].shape)}, "
                             f"the model wants {s}; check --model and --num-classes")
    per_block: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        m = _BLOCK.fullmatch(k)
        if m is None:
            if k not in glob:
                raise SpvitError(f"{where}: unexpected key {k} (not part of model '{spec.model}')")
            continue
        per_block.setdefault(f"layers.{m[1]}.blocks.{m[2]}", {})[m[3]] = v
    extra = sorted(set(per_block) - set(paths))
    if extra:
        raise SpvitError(f"{where}: has {extra[0]}, a block model '{spec.model}' does not have ({len(paths)} blocks)")
    for i, (path, b) in enumerate(zip(paths, spec.blocks)):
        keys = per_block.get(path)
        if keys is None:
            raise SpvitError(f"block {i} ({path}): {where} has no weights for it")
        blk = dense.get_submodule(path)
        C, H = blk.dim, blk.attn.num_heads
        table = blk.attn.relative_position_bias_table.shape[0]
        want = {f"attn.{k}": s for k, s in _attn_shapes(b.attn, C, H, table).items()}
        w = b.ffn_width
        want.update({"norm1.weight": (C,), "norm1.bias": (C,), "norm2.weight": (C,), "norm2.bias": (C,),
                     "mlp.fc1.weight": (w, C), "mlp.fc1.bias": (w,), "mlp.fc2.weight": (C, w), "mlp.fc2.bias": (C,)})
        optional = {"attn_mask", "attn.relative_position_index", f"attn.bn_{'3x3' if b.attn == 'conv3x3' else '1x1'}"
                    ".num_batches_tracked"}
        got = set(keys) - optional
        if got != set(want):
            seen = _seen_op({k[5:] for k in keys if k.startswith("attn.") and k[5:] not in
                             ("relative_position_index",)})
            if seen is not None and seen != b.attn:
                raise SpvitError(f"block {i} ({path}): the architecture says {b.attn} but the checkpoint's block "
                                 f"is {seen}")
            missing, unexpected = sorted(set(want) - got), sorted(got - set(want))
            what = f"lacks {path}.{missing[0]}" if missing else f"has unexpected {path}.{unexpected[0]}"
            raise SpvitError(f"block {i} ({path}, {b.attn}): the checkpoint {what}")
        for k, s in want.items():
            if tuple(keys[k].shape) != s:
                raise SpvitError(f"block {i} ({path}, {b.attn}): {path}.{k} is {tuple(keys[k].shape)}, expected {s}"
                                 + ("; the FFN width differs from the architecture's" if k.startswith("mlp.") else ""))


@torch.no_grad()
def _dense_state(state: dict[str, torch.Tensor], spec: ArchSpec, dense: nn.Module, paths: list[str]) -> dict[str, torch.Tensor]:
    """Official fine-tuned weights as the dense timm model's state (unused parts zero)."""
    from .official_common import scatter_ffn

    by_path = dict(zip(paths, spec.blocks))
    new = {}
    for k, v in dense.state_dict().items():
        m = _BLOCK.fullmatch(k)
        if m is None:
            new[k] = state[k]
            continue
        path, rest = f"layers.{m[1]}.blocks.{m[2]}", m[3]
        b, pre = by_path[path], f"{path}."
        if rest.startswith("attn.qkv."):
            part = rest.removeprefix("attn.qkv.")
            if b.attn == "skip":
                new[k] = torch.zeros_like(v)  # a skip block reads no attention weight
            else:
                val = state[f"{pre}attn.v.{part}"]
                qk = state[f"{pre}attn.qk.{part}"] if b.attn == "msa" else torch.zeros_like(v[: 2 * v.shape[0] // 3])
                new[k] = torch.cat([qk, val])  # conv blocks never read the q/k rows
        elif rest.startswith("attn."):
            key = pre + rest
            new[k] = state[key] if key in state else torch.zeros_like(v)  # no bias table / proj in conv / skip
        elif rest in ("mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight"):
            new[k] = scatter_ffn(state[pre + rest], v, b.ffn_kept, columns=rest == "mlp.fc2.weight")
        else:
            new[k] = state[pre + rest]
    return new


def official_to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Downsample one stage later, `head.*` -> `head.fc.*`, buffers dropped (timm's own rule for original
    Swin checkpoints); block keys otherwise unchanged."""
    out = {}
    shift = "layers.0.downsample.reduction.weight" in state  # official layout (timm has none in stage 0)
    for k, v in state.items():
        if k.endswith(("attn_mask", "relative_position_index")):
            continue
        if shift:
            k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", k)
        out[k.replace("head.", "head.fc.", 1) if k.startswith("head.") else k] = v
    return out


def _resolve_spec(state: dict[str, torch.Tensor], model: str, arch: ArchSpec | str | None, indicators: Any,
                  search: Any, img: int, classes: int, paths: list[str], dense_widths: list[int]) -> ArchSpec:
    from .models import resolve_model_name, same_model
    from .official_common import check_depth, parse_indicators, state_of

    name = resolve_model_name(model)
    if arch is not None:
        if indicators is not None or search is not None:
            raise SpvitError("give the architecture once: --arch, or --indicators and/or --search-ckpt")
        spec = load_spec(arch) if not isinstance(arch, ArchSpec) else arch
        if not same_model(spec.model, model):
            raise SpvitError(f"the architecture is for model '{spec.model}', not '{model}'; pass the matching --model")
        check_depth(len(spec.blocks), len(paths), name, "the architecture")
        spec.validate_against(len(paths), dense_widths, where="the architecture")
        return replace(spec.with_overrides(img_size=img, num_classes=classes), family="swin", skip_branch="input",
                       conv_scope="full_map")
    if indicators is None:
        raise SpvitError("say which architecture the checkpoint has: --arch or --indicators '[[[1,0,0],[0,0,0]],...]'")
    codes = flatten_stage_indicators(indicators if not isinstance(indicators, str) or not indicators.strip().startswith("[")
                                     else _literal(indicators))
    ops = parse_indicators(codes)
    check_depth(len(ops), len(paths), name, "--indicators")
    kept: list[tuple[int, ...]] = []
    extra: dict[str, Any] = {}
    if search is not None:
        sstate, where = state_of(search, "search file")
        for i, path in enumerate(paths):
            t = sstate.get(f"{path}.mlp.assigned_indicator_index")
            if t is None:
                raise SpvitError(f"block {i} ({path}): {where} has no {path}.mlp.assigned_indicator_index")
            t = t.detach().flatten().double()
            if t.numel() != dense_widths[i] or not bool(((t == 0) | ((t - 1).abs() < 1e-4)).all()):
                raise SpvitError(f"block {i} ({path}): {where} holds {t.numel()} indicators, not {dense_widths[i]} "
                                 "values of 0/1 (a search file for another model?)")
            kept.append(tuple(int(k) for k in torch.nonzero(t != 0).flatten().tolist()))
    else:
        for i, path in enumerate(paths):
            fc1 = state.get(f"{path}.mlp.fc1.weight")
            kept.append(tuple(range(int(fc1.shape[0]) if fc1 is not None else 0)))
        extra = {"ffn_kept": PLACEHOLDER_KEPT}
    return ArchSpec(model=name, img_size=img, num_classes=classes,
                    blocks=tuple(BlockSpec(attn=op, ffn_kept=k) for op, k in zip(ops, kept)),
                    source="official SPViT-Swin checkpoint", extra=extra, family="swin", skip_branch="input",
                    conv_scope="full_map")


def _literal(text: str) -> Any:
    import ast
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SpvitError(f"--indicators is not a list of gate codes: {text[:60]!r}") from None


def import_official_swin(state: dict[str, torch.Tensor], where: str, model: str, *, arch: ArchSpec | str | None = None,
                         indicators: str | Sequence[Any] | None = None, search: Any = None,
                         img_size: int | None = None, num_classes: int | None = None) -> tuple[nn.Module, ArchSpec]:
    """Official SPViT-Swin fine-tuned state dict -> (plain network in eval mode, its spec)."""
    from .families import family_of
    from .materialization import materialize
    from .models import create_dense
    from .supernet import fix_gates, to_supernet
    from .supernet.build import supernet_blocks

    if "head.weight" not in state:
        raise SpvitError(f"{where} has no 'head.weight'; not an official SPViT-Swin checkpoint")
    classes = int(state["head.weight"].shape[0])
    if num_classes is not None and num_classes != classes:
        raise SpvitError(f"--num-classes {num_classes} does not fit {where}: its head has {classes} classes")
    meta = create_dense(model, num_classes=classes, img_size=img_size, device="meta")
    fam = family_of(meta, model)
    img = fam.img_size(meta)
    state = official_to_timm_keys(state)
    paths = fam.block_paths(meta)
    spec = _resolve_spec(state, model, arch, indicators, search, img, classes, paths, list(fam.dims(meta).mlp_hidden))
    dense = meta.to_empty(device="cpu")
    check_official_swin_state(state, spec, dense, paths, where)
    own = dense.state_dict()
    dense.load_state_dict(_dense_state(state, spec, dense, paths), strict=True)
    for name, buf in dense.named_buffers():  # non-persistent buffers (masks, indices): recomputed, not loaded
        if name not in own:
            mod = dense.get_submodule(name.rsplit(".", 1)[0])
            if hasattr(mod, "init_non_persistent_buffers"):
                mod.init_non_persistent_buffers()
    supernet = to_supernet(dense)  # the Swin family's alpha (100) and column table
    with torch.no_grad():
        for path, blk, b in zip(paths, supernet_blocks(supernet), spec.blocks):
            if b.attn in CONV_KERNEL:
                blk.attn.head_logits.copy_(state[f"{path}.attn.head_probs"])
                src = "bn_3x3" if b.attn == "conv3x3" else "bn_1x1"
                for k in BN_KEYS:
                    getattr(blk.attn.bn(b.attn), k).copy_(state[f"{path}.attn.{src}.{k}"])
    supernet.eval()
    return materialize(fix_gates(supernet, spec), spec), spec
