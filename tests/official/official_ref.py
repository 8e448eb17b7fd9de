"""Test oracle: the official SPViT DeiT fine-tune forward pass, written from the description in
shared/SPVIT.md with plain torch functional code (nothing from spvit_deploy), and random
checkpoints in the official format.

Official semantics implemented here: MSA with q, k from `attn.qk` (first C rows q), scale d**-0.5;
conv blocks mix heads per kernel position with A = softmax(head_probs / 0.01) over heads,
3x3 kernel position k at (row i, col j) with k = i + 3*j, conv bias = sum of the 9 mixed value
biases, projection = sum of the 9 mixed projections; 1x1 uses position 4 only; eval-mode
BatchNorm then ReLU; the class token passes through conv blocks; a skip block returns its
normalised input for every token (x = x); FFNs are trimmed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ALPHA = 0.01
LN_EPS = 1e-6
BN_EPS = 1e-5


def _mixed(W: torch.Tensor, A: torch.Tensor, heads: int, axis: int) -> list[torch.Tensor]:
    """Per kernel position k: sum over heads h of A[h, k] * (head h's slice of W along `axis`)."""
    d = W.shape[axis] // heads
    parts = [W.narrow(axis, h * d, d) for h in range(heads)]
    return [sum(A[h, k] * parts[h] for h in range(heads)) for k in range(9)]


def _conv_branch(h: torch.Tensor, sd: dict, pre: str, op: str, heads: int, row_major: bool) -> torch.Tensor:
    cls, patches = h[:, :1], h[:, 1:]
    B, N, C = patches.shape
    g = int(round(N ** 0.5))
    A = torch.softmax(sd[pre + "head_probs"] / ALPHA, dim=0)  # (H, 9)
    V = _mixed(sd[pre + "v.weight"], A, heads, 0)  # 9 x (d, C)
    beta = _mixed(sd[pre + "v.bias"], A, heads, 0)  # 9 x (d,)
    O = _mixed(sd[pre + "proj.weight"], A, heads, 1)  # 9 x (C, d)
    grid = patches.reshape(B, g, g, C)  # tokens are row-major on the grid
    if op == "conv1x1":
        y, proj, bn = grid @ V[4].T + beta[4], O[4], "bn_1x1."
    else:
        padded = F.pad(grid, (0, 0, 1, 1, 1, 1))
        y = sum(beta)
        for k in range(9):
            i, j = (k // 3, k % 3) if row_major else (k % 3, k // 3)  # kernel row i, column j
            y = y + padded[:, i : i + g, j : j + g] @ V[k].T  # cross-correlation, as conv2d
        proj, bn = sum(O), "bn_3x3."
    y = (y - sd[pre + bn + "running_mean"]) / torch.sqrt(sd[pre + bn + "running_var"] + BN_EPS)
    y = torch.relu(y * sd[pre + bn + "weight"] + sd[pre + bn + "bias"])
    out = y.reshape(B, N, -1) @ proj.T + sd[pre + "proj.bias"]
    return torch.cat([cls, out], dim=1)


def _msa(h: torch.Tensor, sd: dict, pre: str, heads: int) -> torch.Tensor:
    B, T, C = h.shape
    d = C // heads
    qk = F.linear(h, sd[pre + "qk.weight"], sd[pre + "qk.bias"])
    q = qk[..., :C].reshape(B, T, heads, d).transpose(1, 2)
    k = qk[..., C:].reshape(B, T, heads, d).transpose(1, 2)
    v = F.linear(h, sd[pre + "v.weight"], sd[pre + "v.bias"]).reshape(B, T, heads, d).transpose(1, 2)
    attn = torch.softmax((q * d ** -0.5) @ k.transpose(-2, -1), dim=-1)
    return F.linear((attn @ v).transpose(1, 2).reshape(B, T, C), sd[pre + "proj.weight"], sd[pre + "proj.bias"])


@torch.no_grad()
def official_forward(
    sd: dict, ops: list[str], x: torch.Tensor, heads: int, patch: int = 16, row_major: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(final normalised tokens (B, T, C), logits) of the official fine-tuned model."""
    C = sd["cls_token"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    t = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), t.flatten(2).transpose(1, 2)], dim=1)
    t = t + sd["pos_embed"]
    for i, op in enumerate(ops):
        pre = f"blocks.{i}."
        h = F.layer_norm(t, (C,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], LN_EPS)
        if op == "msa":
            a = _msa(h, sd, pre + "attn.", heads)
        elif op == "skip":
            a = h
        else:
            a = _conv_branch(h, sd, pre + "attn.", op, heads, row_major)
        t = t + a
        h = F.layer_norm(t, (C,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], LN_EPS)
        h = F.gelu(F.linear(h, sd[pre + "mlp.fc1.weight"], sd[pre + "mlp.fc1.bias"]))
        t = t + F.linear(h, sd[pre + "mlp.fc2.weight"], sd[pre + "mlp.fc2.bias"])
    t = F.layer_norm(t, (C,), sd["norm.weight"], sd["norm.bias"], LN_EPS)
    return t, F.linear(t[:, 0], sd["head.weight"], sd["head.bias"])


def random_official_state(
    ops: list[str], widths: list[int], dim: int, heads: int, img: int, num_classes: int,
    patch: int = 16, seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A fine-tuned checkpoint's `model` dict in the official format, random but well scaled:
    non-uniform head_probs, non-trivial BatchNorm statistics."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape: int, std: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    def linear(name: str, out: int, inp: int) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": rn(out, inp, std=inp ** -0.5), f"{name}.bias": rn(out, std=0.1)}

    C, d, n = dim, dim // heads, (img // patch) ** 2
    sd = {
        "cls_token": rn(1, 1, C, std=0.5), "pos_embed": rn(1, n + 1, C, std=0.5),
        "patch_embed.proj.weight": rn(C, 3, patch, patch, std=(3 * patch * patch) ** -0.5),
        "patch_embed.proj.bias": rn(C, std=0.1),
        "norm.weight": 1 + rn(C, std=0.1), "norm.bias": rn(C, std=0.1), **linear("head", num_classes, C),
    }
    for i, (op, w) in enumerate(zip(ops, widths)):
        pre = f"blocks.{i}."
        for norm in ("norm1", "norm2"):
            sd.update({f"{pre}{norm}.weight": 1 + rn(C, std=0.1), f"{pre}{norm}.bias": rn(C, std=0.1)})
        if op != "skip":
            sd.update(linear(pre + "attn.v", C, C))
            sd.update(linear(pre + "attn.proj", C, C))
        if op == "msa":
            sd.update(linear(pre + "attn.qk", 2 * C, C))
        elif op in ("conv3x3", "conv1x1"):
            sd[pre + "attn.head_probs"] = 1 + rn(heads, 9, std=0.03)  # softmax(./0.01): peaked, not one-hot
            bn = pre + ("attn.bn_3x3." if op == "conv3x3" else "attn.bn_1x1.")
            sd.update({
                bn + "weight": 0.5 + torch.rand(d, generator=g), bn + "bias": rn(d, std=0.2),
                bn + "running_mean": rn(d, std=0.2), bn + "running_var": 0.5 + torch.rand(d, generator=g),
                bn + "num_batches_tracked": torch.tensor(1000),
            })
        sd.update(linear(pre + "mlp.fc1", w, C))
        sd.update(linear(pre + "mlp.fc2", C, w) if w else {pre + "mlp.fc2.weight": torch.zeros(C, 0),
                                                            pre + "mlp.fc2.bias": rn(C, std=0.1)})
    return sd


def codes(ops: list[str]) -> list[list[float]]:
    """Ops as the official configs write them (assigned_indicators)."""
    table = {"skip": [0.0, 0.0, 0.0], "conv1x1": [1.0, 0.0, 0.0], "conv3x3": [1.0, 1.0, 0.0], "msa": [1.0, 1.0, 1.0]}
    return [table[op] for op in ops]


def search_file_state(kept: list[list[int]], dense_width: int) -> dict[str, torch.Tensor]:
    """An official ffn_indicators/*.pth `model` dict: one 0/1 float vector per block."""
    out = {}
    for i, k in enumerate(kept):
        t = torch.zeros(dense_width)
        t[list(k)] = 1.0
        out[f"blocks.{i}.mlp.assigned_indicator_index"] = t
    return out
