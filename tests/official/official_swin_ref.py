"""The official SPViT-Swin fine-tuned forward, written from SPVIT-SWIN.md (sections 1, 2 and 4) on
official state-dict keys, with no spvit_deploy or timm module: the reference `import-official` is
held to. The knobs (`columns`, `row_major`, `alpha`, `skip_zero`) produce the known wrong readings,
so the tests can show that they would be caught."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# kernel tap (row, col) -> head-mixing column (the note's table: column 0 is the centre)
SWIN_TAPS = {(0, 0): 1, (1, 0): 2, (2, 0): 3, (0, 1): 4, (1, 1): 0, (2, 1): 5, (0, 2): 6, (1, 2): 7, (2, 2): 8}
DEIT_TAPS = {(r, c): r + 3 * c for r in range(3) for c in range(3)}  # the wrong (DeiT) reading for Swin
CODES = {"skip": [0, 0, 0], "conv1x1": [1, 0, 0], "conv3x3": [1, 1, 0], "msa": [1, 1, 1]}


def _ln(x: torch.Tensor, s: dict, key: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], s[f"{key}.weight"], s[f"{key}.bias"], eps=1e-5)


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    B, H, W, C = x.shape
    return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, C)


def _unwindows(t: torch.Tensor, w: int, B: int, H: int, W: int) -> torch.Tensor:
    C = t.shape[-1]
    return t.view(B, H // w, W // w, w, w, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)


def _rel_index(w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)  # (2, w*w)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + w - 1) * (2 * w - 1) + (rel[1] + w - 1)


def _shift_mask(R: int, w: int, s: int) -> torch.Tensor:
    label = torch.zeros(1, R, R, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            label[:, hs, ws, :] = cnt
            cnt += 1
    lw = _windows(label, w).squeeze(-1)  # (nW, w*w)
    diff = lw[:, None, :] - lw[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def _msa(y: torch.Tensor, s: dict, pre: str, H: int, w: int, shift: int) -> torch.Tensor:
    B, R, _, C = y.shape
    d = C // H
    if shift:
        y = torch.roll(y, (-shift, -shift), dims=(1, 2))
    t = _windows(y, w)  # (B*nW, N, C)
    qk = F.linear(t, s[f"{pre}.qk.weight"], s[f"{pre}.qk.bias"])
    v = F.linear(t, s[f"{pre}.v.weight"], s[f"{pre}.v.bias"])
    n = w * w

    def heads(z: torch.Tensor) -> torch.Tensor:
        return z.reshape(-1, n, H, d).transpose(1, 2)

    q, k = heads(qk[..., :C]) * d ** -0.5, heads(qk[..., C:])
    a = q @ k.transpose(-2, -1)
    a = a + s[f"{pre}.relative_position_bias_table"][_rel_index(w).reshape(-1)].reshape(n, n, H).permute(2, 0, 1)
    if shift:
        m = _shift_mask(R, w, shift)
        a = (a.view(B, -1, H, n, n) + m[None, :, None]).view(-1, H, n, n)
    o = (a.softmax(-1) @ heads(v)).transpose(1, 2).reshape(-1, n, C)
    o = _unwindows(F.linear(o, s[f"{pre}.proj.weight"], s[f"{pre}.proj.bias"]), w, B, R, R)
    return torch.roll(o, (shift, shift), dims=(1, 2)) if shift else o


def _conv(y: torch.Tensor, s: dict, pre: str, H: int, op: str, alpha: float, taps: dict, row_major: bool) -> torch.Tensor:
    B, R, _, C = y.shape
    d = C // H
    A = torch.softmax(s[f"{pre}.head_probs"] / alpha, dim=0)  # (H, 9)
    Wv = s[f"{pre}.v.weight"].reshape(H, d, C)
    bv = s[f"{pre}.v.bias"].reshape(H, d)
    Wo = s[f"{pre}.proj.weight"].reshape(C, H, d)
    V = [sum(A[h, m] * Wv[h] for h in range(H)) for m in range(9)]
    beta = [sum(A[h, m] * bv[h] for h in range(H)) for m in range(9)]
    O = [sum(A[h, m] * Wo[:, h] for h in range(H)) for m in range(9)]
    bn = "bn_3x3" if op == "conv3x3" else "bn_1x1"
    if op == "conv1x1":
        z, Oc = F.linear(y, V[0], beta[0]).permute(0, 3, 1, 2), O[0]
    else:
        K = torch.zeros(d, C, 3, 3)
        for (r, c), m in taps.items():
            rr, cc = (c, r) if row_major else (r, c)  # row-major: position p = 3r + c read as r + 3c
            K[:, :, rr, cc] = V[m]
        z, Oc = F.conv2d(y.permute(0, 3, 1, 2), K, sum(beta), padding=1), sum(O)
    z = F.batch_norm(z, s[f"{pre}.{bn}.running_mean"], s[f"{pre}.{bn}.running_var"], s[f"{pre}.{bn}.weight"],
                     s[f"{pre}.{bn}.bias"], training=False, eps=1e-5)
    return F.linear(F.relu(z).permute(0, 2, 3, 1), Oc, s[f"{pre}.proj.bias"])


@torch.no_grad()
def official_forward(s: dict, ops: list[str], x: torch.Tensor, *, depths: tuple[int, ...], heads: tuple[int, ...],
                     window: int, patch: int = 4, alpha: float = 100.0, taps: dict = SWIN_TAPS,
                     row_major: bool = False, skip_zero: bool = False) -> torch.Tensor:
    y = F.conv2d(x, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=patch).permute(0, 2, 3, 1)
    y = _ln(y, s, "patch_embed.norm")
    b = 0
    for i, (depth, H) in enumerate(zip(depths, heads)):
        for j in range(depth):
            pre, op = f"layers.{i}.blocks.{j}", ops[b]
            R = y.shape[1]
            w = min(window, R)
            shift = window // 2 if (j % 2 == 1 and R > window) else 0
            z = _ln(y, s, f"{pre}.norm1")
            if op == "msa":
                branch = _msa(z, s, f"{pre}.attn", H, w, shift)
            elif op == "skip":
                branch = torch.zeros_like(z) if skip_zero else z
            else:
                branch = _conv(z, s, f"{pre}.attn", H, op, alpha, taps, row_major)
            y = y + branch
            h = F.gelu(F.linear(_ln(y, s, f"{pre}.norm2"), s[f"{pre}.mlp.fc1.weight"], s[f"{pre}.mlp.fc1.bias"]))
            y = y + F.linear(h, s[f"{pre}.mlp.fc2.weight"], s[f"{pre}.mlp.fc2.bias"])
            b += 1
        if i < len(depths) - 1:  # official layout: downsample at the end of a stage
            m = torch.cat([y[:, 0::2, 0::2], y[:, 1::2, 0::2], y[:, 0::2, 1::2], y[:, 1::2, 1::2]], dim=-1)
            y = F.linear(_ln(m, s, f"layers.{i}.downsample.norm"), s[f"layers.{i}.downsample.reduction.weight"])
    y = _ln(y, s, "norm").mean(dim=(1, 2))
    return F.linear(y, s["head.weight"], s["head.bias"])


def random_official_checkpoint(ops: list[str], widths: list[int], *, embed: int, depths: tuple[int, ...],
                               heads: tuple[int, ...], window: int, img: int, classes: int, patch: int = 4,
                               seed: int = 0) -> dict[str, torch.Tensor]:
    """A fine-tuned official SPViT-Swin state dict with random weights, head logits N(0, 300^2) (distinct
    columns at alpha 100) and random BatchNorm statistics; keys as SPVIT-SWIN.md section 4 lists them."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, std: float = 0.05, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    s = {"patch_embed.proj.weight": r(embed, 3, patch, patch, std=0.1), "patch_embed.proj.bias": r(embed),
         "patch_embed.norm.weight": r(embed, mean=1.0), "patch_embed.norm.bias": r(embed)}
    R, b = img // patch, 0
    for i, (depth, H) in enumerate(zip(depths, heads)):
        C = embed * 2 ** i
        d = C // H
        for j in range(depth):
            pre, op, w = f"layers.{i}.blocks.{j}", ops[b], widths[b]
            s.update({f"{pre}.norm1.weight": r(C, mean=1.0), f"{pre}.norm1.bias": r(C),
                      f"{pre}.norm2.weight": r(C, mean=1.0), f"{pre}.norm2.bias": r(C),
                      f"{pre}.mlp.fc1.weight": r(w, C), f"{pre}.mlp.fc1.bias": r(w),
                      f"{pre}.mlp.fc2.weight": r(C, w), f"{pre}.mlp.fc2.bias": r(C)})
            ww = min(window, R)
            if j % 2 == 1 and R > window:
                s[f"{pre}.attn_mask"] = _shift_mask(R, ww, window // 2)
            if op != "skip":
                s.update({f"{pre}.attn.v.weight": r(C, C), f"{pre}.attn.v.bias": r(C),
                          f"{pre}.attn.proj.weight": r(C, C), f"{pre}.attn.proj.bias": r(C)})
            if op == "msa":
                s.update({f"{pre}.attn.qk.weight": r(2 * C, C), f"{pre}.attn.qk.bias": r(2 * C),
                          f"{pre}.attn.relative_position_bias_table": r((2 * ww - 1) ** 2, H, std=0.5),
                          f"{pre}.attn.relative_position_index": _rel_index(ww)})
            elif op in ("conv1x1", "conv3x3"):
                bn = "bn_3x3" if op == "conv3x3" else "bn_1x1"
                s.update({f"{pre}.attn.head_probs": r(H, 9, std=300.0),
                          f"{pre}.attn.{bn}.weight": r(d, std=0.2, mean=1.0), f"{pre}.attn.{bn}.bias": r(d, std=0.2),
                          f"{pre}.attn.{bn}.running_mean": r(d, std=0.2),
                          f"{pre}.attn.{bn}.running_var": torch.rand(d, generator=g) + 0.5,
                          f"{pre}.attn.{bn}.num_batches_tracked": torch.tensor(7)})
            b += 1
        if i < len(depths) - 1:
            s.update({f"layers.{i}.downsample.norm.weight": r(4 * C, mean=1.0),
                      f"layers.{i}.downsample.norm.bias": r(4 * C),
                      f"layers.{i}.downsample.reduction.weight": r(2 * C, 4 * C)})
            R //= 2
    C = embed * 2 ** (len(depths) - 1)
    s.update({"norm.weight": r(C, mean=1.0), "norm.bias": r(C), "head.weight": r(classes, C), "head.bias": r(classes)})
    return s


def nested_codes(ops: list[str], depths: tuple[int, ...]) -> list[list[list[int]]]:
    """Ops as the official Swin *_ft configs write them: gate codes nested per stage."""
    out, b = [], 0
    for depth in depths:
        out.append([CODES[op] for op in ops[b:b + depth]])
        b += depth
    return out

