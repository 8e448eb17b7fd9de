"""Baselines that SPViT is compared with at the same MACs, each a plain module trained like SPViT's
fine-tuning (same teacher, distillation, optimizer, schedule, loop):

- `uniform_ffn_spec`: every attention kept, every FFN cut to one width (|fc1 row| * |fc2 column|);
  an arch spec, so the pipeline's `finetune` trains it.
- `depth_cut`: a smaller dense ViT: the teacher's first blocks, the last one's FFN trimmed to fit.
- `torch_pruning_vit`: Torch-Pruning (`torch-pruning`, the `study` extra) as its timm ViT example
  uses it: `BasePruner`, Taylor importance, whole heads (half of them, as the example) and FFN
  units (fc2 ignored, the "bottleneck" mode), the FFN ratio searched to land under the MACs budget.

`finetune_module` trains any of them; `module_macs` counts MACs as `torch.utils.flop_counter` / 2.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import require
from ..spec import ArchSpec, BlockSpec


def module_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """Multiply-accumulates of one image through `model` (flop counter / 2: matmuls, convs and the
    attention matmuls, counted on timm's unfused attention path: the CPU's fused kernel is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).float().cpu().eval()
    for mod in m.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = False
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(torch.zeros(1, in_chans, img_size, img_size))
    return fc.get_total_flops() // 2


def _ffn_scores(fc1: nn.Linear, fc2: nn.Linear) -> torch.Tensor:
    return fc1.weight.detach().norm(dim=1) * fc2.weight.detach().norm(dim=0)


def uniform_ffn_spec(dense: nn.Module, model: str, img_size: int, num_classes: int, max_macs: int) -> ArchSpec:
    """All MSA; every FFN keeps its `w` units of largest |fc1 row| * |fc2 column|, `w` the widest whose
    MACs (`spvit_deploy.macs.cost`) stay within `max_macs`."""
    from ..macs import cost
    from ..models import vit_dims

    dims = vit_dims(dense)
    order = [torch.argsort(_ffn_scores(b.mlp.fc1, b.mlp.fc2), descending=True).tolist() for b in dense.blocks]

    def spec(w: int) -> ArchSpec:
        blocks = tuple(BlockSpec(attn="msa", ffn_kept=tuple(sorted(o[:w]))) for o in order)
        return ArchSpec(model=model, img_size=img_size, num_classes=num_classes, blocks=blocks,
                        source=f"baseline: uniform FFN width {w}")

    lo, hi = 0, min(len(o) for o in order)
    if cost(dims, spec(0)).macs > max_macs:
        raise ValueError(f"keeping every attention alone costs {cost(dims, spec(0)).macs / cost(dims).macs:.1%} of "
                         "the dense MACs, more than the budget")
    while lo < hi:  # the widest w within budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(dims, spec(mid)).macs <= max_macs else (lo, mid - 1)
    return spec(lo)


def _trim_ffn(mlp: nn.Module, width: int) -> None:
    """Keep the `width` FFN units of largest |fc1 row| * |fc2 column|, in place."""
    keep = torch.sort(torch.topk(_ffn_scores(mlp.fc1, mlp.fc2), width).indices).values
    fc1, fc2 = mlp.fc1, mlp.fc2
    new1, new2 = nn.Linear(fc1.in_features, width), nn.Linear(width, fc2.out_features)
    with torch.no_grad():
        new1.weight.copy_(fc1.weight[keep])
        new1.bias.copy_(fc1.bias[keep])
        new2.weight.copy_(fc2.weight[:, keep])
        new2.bias.copy_(fc2.bias)
    mlp.fc1, mlp.fc2 = new1, new2


def depth_cut(dense: nn.Module, max_macs: int) -> nn.Module:
    """A smaller dense ViT: the first blocks of `dense` (a copy) whose MACs fit `max_macs`; the last
    kept block's FFN trimmed (largest units kept) so the total lands just under the budget."""
    img = int(dense.patch_embed.img_size[0])
    m = copy.deepcopy(dense)
    full = list(m.blocks)
    for depth in range(len(full), 0, -1):
        m.blocks = nn.Sequential(*full[:depth])
        if module_macs(m, img) <= max_macs:
            break
    else:
        raise ValueError("not even one block fits the budget")
    if depth < len(full):  # the next block's attention and part of its FFN, when they fit
        nxt = copy.deepcopy(full[depth])
        m.blocks = nn.Sequential(*full[:depth], nxt)
        lo, hi = 0, nxt.mlp.fc1.out_features
        base = copy.deepcopy(nxt.mlp)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            nxt.mlp = copy.deepcopy(base)
            _trim_ffn(nxt.mlp, mid)
            lo, hi = (mid, hi) if module_macs(m, img) <= max_macs else (lo, mid - 1)
        nxt.mlp = copy.deepcopy(base)
        if lo > 0:
            _trim_ffn(nxt.mlp, lo)
        if lo == 0 or module_macs(m, img) > max_macs:
            m.blocks = nn.Sequential(*full[:depth])
    return m


def _tp_prune(dense: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]], ratio: float,
              head_ratio: float) -> nn.Module:
    """One Torch-Pruning pass over a copy of `dense` (the example's recipe, Taylor importance)."""
    import timm.layers

    tp = require("torch_pruning", "study", "torch-pruning")
    m = copy.deepcopy(dense).float().cpu().train().requires_grad_(True)
    img = int(m.patch_embed.img_size[0])
    example = torch.randn(1, 3, img, img)
    num_heads, ignored = {}, [m.head]
    for mod in m.modules():
        if isinstance(mod, timm.layers.Attention):
            num_heads[mod.qkv] = mod.num_heads
        if isinstance(mod, timm.layers.Mlp):
            ignored.append(mod.fc2)  # the example's --bottleneck: prune inside FFN and attention only
    imp = tp.importance.GroupTaylorImportance()
    pruner = tp.pruner.BasePruner(
        m, example, importance=imp, global_pruning=False, pruning_ratio=ratio, ignored_layers=ignored,
        num_heads=num_heads, prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=head_ratio,
        round_to=1)
    m.zero_grad()
    for x, y in batches:
        torch.nn.functional.cross_entropy(m(x), y).backward()
    for group in pruner.step(interactive=True):
        group.prune()
    for mod in m.modules():
        if isinstance(mod, timm.layers.Attention):
            mod.num_heads = pruner.num_heads[mod.qkv]
            mod.head_dim = mod.qkv.out_features // (3 * mod.num_heads)
            mod.attn_dim = mod.num_heads * mod.head_dim  # timm's forward reshapes to it (the example's rewrite)
    m.zero_grad(set_to_none=True)
    return m.eval()


def torch_pruning_vit(dense: nn.Module, max_macs: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      head_ratio: float = 0.5, steps: int = 10) -> tuple[nn.Module, float]:
    """Prune `dense` with Torch-Pruning to at most `max_macs`: heads by `head_ratio` (the example's 0.5),
    FFN units by the smallest ratio that fits (bisection over `steps` trials); (model, FFN ratio).
    `batches` feed the Taylor importance (the example's --taylor_batchs)."""
    batches = list(batches)
    img = int(dense.patch_embed.img_size[0])
    lo, hi = 0.0, 0.99
    best = _tp_prune(dense, batches, hi, head_ratio)
    if module_macs(best, img) > max_macs:
        raise ValueError(f"Torch-Pruning at ratio {hi} still exceeds {max_macs} MACs")
    best_ratio = hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        m = _tp_prune(dense, batches, mid, head_ratio)
        if module_macs(m, img) <= max_macs:
            best, best_ratio, hi = m, mid, mid
        else:
            lo = mid
    return best, best_ratio


def finetune_module(cfg: Any, student: nn.Module, out: str | Path, *, resume: bool = True, threads: int = 0,
                    progress: bool = False) -> dict[str, Any]:
    """Train `student` as the pipeline fine-tunes SPViT (`cfg.finetune`: AdamW, schedule, epochs;
    distillation from `cfg`'s dense model; the same loop, checkpoints and resume); writes
    `out/model.pt` (the whole module); its final evaluation on the data's val split."""
    from .._io import atomic_path
    from .finetuning import finetune_stage
    from .loop import close_runtime, evaluate_top, run_stage
    from .pipeline import open_job

    out = Path(out)
    job = open_job(cfg, out, ("finetune",), resume, "cpu", threads, progress)
    try:
        student = student.to(job.rt.device).train().requires_grad_(True)

        def evaluate() -> dict[str, float]:
            return evaluate_top(student, job.data, job.rt, job.amp)

        stage = finetune_stage(student, job.teacher, cfg, job.data.steps_per_epoch, evaluate)
        res = run_stage(stage, job.data, job.rt, job.opts, job.ckpt("finetune"), job.log, job.resume)
        with atomic_path(out / "model.pt") as tmp:
            torch.save(student.eval(), tmp)
        if progress:
            print(f"finetune: val top-1 {res.get('top1', float('nan')):.2f}", file=sys.stderr)
        return res
    finally:
        close_runtime(job.rt)
