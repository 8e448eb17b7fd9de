"""Fused Triton kernel for SPViT conv blocks: [LayerNorm ->] kxk conv + bias + ReLU ->
1x1 projection + bias [-> + residual], one launch; named autotune configs and launchers.

Tokens are (B, 1+N, C), class token first, patches row-major on a (gh, gw) grid; or, for models
without a class token (Swin's NHWC maps), (B, N, C) or (B, gh, gw, C): the same memory, PREFIX = 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import Grid, conv_attn_reference, conv_block_reference


@triton.jit
def _ln_stats(x_rows, row_ok, eps, C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Mean and 1/std over C of the (BLOCK_M,) rows at pointers x_rows; one pass, chunks
    merged with Chan's formula so the variance never subtracts two large sums."""
    offs_k = tl.arange(0, BLOCK_K)
    mean = tl.zeros((BLOCK_M,), tl.float32)
    m2 = tl.zeros((BLOCK_M,), tl.float32)
    for k0 in range(0, C, BLOCK_K):
        k_ok = k0 + offs_k < C
        v = tl.load(x_rows[:, None] + (k0 + offs_k)[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        v = v.to(tl.float32)
        n_b = tl.sum(k_ok.to(tl.float32), axis=0)
        mean_b = tl.sum(v, axis=1) / n_b
        dev = tl.where(k_ok[None, :], v - mean_b[:, None], 0.0)
        n_a = k0 * 1.0
        delta = mean_b - mean
        mean += delta * (n_b / (n_a + n_b))
        m2 += tl.sum(dev * dev, axis=1) + delta * delta * (n_a * n_b / (n_a + n_b))
    return mean, tl.rsqrt(m2 / C + eps)


@triton.jit
def _mma(a, b, acc, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """acc += a @ b with fp32 accumulation (DOT_FP32: fp32 operands, for bf16 in the interpreter)."""
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _conv_block_kernel(
    x_ptr, out_ptr,  # (B, PREFIX+N, C) contiguous
    ln_w_ptr, ln_b_ptr,  # (C,); unused (None) without LN_RESIDUAL
    cw_ptr, cb_ptr,  # conv weight (D, C, KS, KS) with strides below; bias (D,)
    pw_ptr, pb_ptr,  # proj weight (C, D) contiguous; bias (C,)
    eps,  # LayerNorm eps; unused without LN_RESIDUAL
    B,  # batch size: only an autotune key (small batches want small tiles)
    stride_wd, stride_wc, stride_wt,  # conv weight strides of d, c and kx (ky = KS * kx)
    C: tl.constexpr, D: tl.constexpr, GH: tl.constexpr, GW: tl.constexpr, KS: tl.constexpr,
    LN_RESIDUAL: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREFIX: tl.constexpr = 1,  # tokens before the grid: 1 (a class token) or 0 (a feature map)
):
    """One program per (tile of BLOCK_M patch rows, image); with a class token, program 0 also writes it.
    The tap loop is a runtime loop on purpose: unrolled, ptxas takes ~30 s per sm_90 variant."""
    N: tl.constexpr = GH * GW
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    x_img = x_ptr + pid_b * (N + PREFIX) * C
    out_img = out_ptr + pid_b * (N + PREFIX) * C
    dt = x_ptr.dtype.element_ty

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # patch index
    m_ok = offs_m < N
    py = offs_m // GW
    px = offs_m % GW
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D

    # conv: KS*KS shifted (BLOCK_M, C) @ (C, D) GEMMs; zero padding = masked neighbour rows
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for t in range(KS * KS):
        ny = py + (t // KS - KS // 2)
        nx = px + (t % KS - KS // 2)
        ok = m_ok & (ny >= 0) & (ny < GH) & (nx >= 0) & (nx < GW)
        a_rows = x_img + (PREFIX + ny * GW + nx) * C
        if LN_RESIDUAL:
            mean, rstd = _ln_stats(a_rows, ok, eps, C, BLOCK_M, BLOCK_K)
        w_tap = cw_ptr + t * stride_wt
        for k0 in range(0, C, BLOCK_K):
            kk = k0 + offs_k
            k_ok = kk < C
            a_ok = ok[:, None] & k_ok[None, :]
            a = tl.load(a_rows[:, None] + kk[None, :], mask=a_ok, other=0.0)
            if LN_RESIDUAL:
                g = tl.load(ln_w_ptr + kk, mask=k_ok, other=0.0).to(tl.float32)
                beta = tl.load(ln_b_ptr + kk, mask=k_ok, other=0.0).to(tl.float32)
                a = (a.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]
                a = tl.where(a_ok, a, 0.0).to(dt)
            w = tl.load(w_tap + kk[:, None] * stride_wc + offs_d[None, :] * stride_wd,
                        mask=k_ok[:, None] & d_ok[None, :], other=0.0)
            acc = _mma(a, w, acc, DOT_FP32, PRECISION)
    conv_bias = tl.load(cb_ptr + offs_d, mask=d_ok, other=0.0).to(tl.float32)
    y = tl.maximum(acc + conv_bias[None, :], 0.0).to(dt)  # padded D columns stay 0

    # projection (BLOCK_M, D) @ (D, C) in BLOCK_N column chunks, bias, residual, store
    offs_n = tl.arange(0, BLOCK_N)
    tok = (PREFIX + offs_m)[:, None] * C
    for n0 in range(0, C, BLOCK_N):
        nn = n0 + offs_n
        n_ok = nn < C
        wp = tl.load(pw_ptr + nn[None, :] * D + offs_d[:, None], mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        o = _mma(y, wp, tl.zeros((BLOCK_M, BLOCK_N), tl.float32), DOT_FP32, PRECISION)
        o += tl.load(pb_ptr + nn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        o_ok = m_ok[:, None] & n_ok[None, :]
        if LN_RESIDUAL:
            o += tl.load(x_img + tok + nn[None, :], mask=o_ok, other=0.0).to(tl.float32)
        tl.store(out_img + tok + nn[None, :], o.to(dt), mask=o_ok)

    # class token: attn passes it through, so out = x + LN(x) (or u itself); row 0 of a tile
    if PREFIX == 1:  # a constexpr: map kernels have no class-token code at all
        if pid_m == 0:
            cls_ok = tl.arange(0, BLOCK_M) == 0
            cls_rows = x_img + tl.arange(0, BLOCK_M) * 0
            if LN_RESIDUAL:
                mean, rstd = _ln_stats(cls_rows, cls_ok, eps, C, BLOCK_M, BLOCK_K)
            for k0 in range(0, C, BLOCK_K):
                kk = k0 + offs_k
                k_ok = kk < C
                c_ok = cls_ok[:, None] & k_ok[None, :]
                v = tl.load(cls_rows[:, None] + kk[None, :], mask=c_ok, other=0.0)
                if LN_RESIDUAL:
                    g = tl.load(ln_w_ptr + kk, mask=k_ok, other=0.0).to(tl.float32)
                    beta = tl.load(ln_b_ptr + kk, mask=k_ok, other=0.0).to(tl.float32)
                    u = (v.to(tl.float32) - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]
                    v = (v.to(tl.float32) + u.to(dt).to(tl.float32)).to(dt)
                tl.store(out_img + tl.arange(0, BLOCK_M)[:, None] * 0 + kk[None, :], v, mask=c_ok)


def _config(block_m: int, block_k: int, block_n: int, num_warps: int, num_stages: int) -> triton.Config:
    return triton.Config({"BLOCK_M": block_m, "BLOCK_K": block_k, "BLOCK_N": block_n},
                         num_warps=num_warps, num_stages=num_stages)


# Few on purpose: each is compiled (and checked for spills / tensor cores) for sm_80 and sm_90.
# fp32 tiles are twice the bytes and tf32x3 splits each operand in two: it gets its own config.
CONFIGS: dict[str, triton.Config] = {
    "m64_k64_n64_w4_s3": _config(64, 64, 64, 4, 3),  # fp16/bf16 default: mid batches, wgmma-sized M
    "m128_k64_n128_w8_s2": _config(128, 64, 128, 8, 2),  # fp16/bf16, large batches
    "m32_k128_n64_w4_s2": _config(32, 128, 64, 4, 2),  # fp16/bf16, batch 1: more programs per image
    "tf32x3_m32_k32_n64_w4_s2": _config(32, 32, 64, 4, 2),  # fp32 only: tf32x3 tensor cores
}
AUTOTUNE_KEY = ["B", "C", "D", "GH", "GW", "KS", "LN_RESIDUAL", "PREFIX"]  # the autotuner adds the dtypes


def configs_for(dtype: torch.dtype) -> list[str]:
    """Names of the CONFIGS meant for tokens of this dtype, default first."""
    fp32 = dtype == torch.float32
    return [name for name in CONFIGS if name.startswith("tf32x3_") == fp32]


def _prune(configs: list[triton.Config], named_args: dict, **_: object) -> list[triton.Config]:
    wanted = {id(CONFIGS[name]) for name in configs_for(named_args["x_ptr"].dtype)}
    return [cfg for cfg in configs if id(cfg) in wanted]


_conv_block_autotuned = triton.autotune(configs=list(CONFIGS.values()), key=AUTOTUNE_KEY,
                                        prune_configs_by={"early_config_prune": _prune})(_conv_block_kernel)

# Kernels built under TRITON_INTERPRET=1 run on CPU tensors (numpy interpreter).
INTERPRETED: bool = not isinstance(_conv_block_kernel, triton.runtime.JITFunction)
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def use_triton(x: torch.Tensor) -> bool:
    """True where the Triton kernel can run on x: CUDA tensors, or any tensor under the interpreter."""
    return x.is_cuda or INTERPRETED


def pack_conv_weight(conv_weight: torch.Tensor) -> torch.Tensor:
    """Same (d, C, k, k) tensor stored tap-major as (k, k, C, d): coalesced kernel loads.
    Pack once at load time; the launchers accept packed or contiguous weights."""
    return conv_weight.permute(2, 3, 1, 0).contiguous().permute(3, 2, 0, 1)


def _is_packed(w: torch.Tensor) -> bool:
    d, c, k, _ = w.shape
    return w.stride() == (1, d, k * c * d, c * d)


def _check(x: torch.Tensor, grid: Grid, conv_weight: torch.Tensor, vectors: dict[str, tuple[torch.Tensor, int]],
           proj_weight: torch.Tensor, out: torch.Tensor | None) -> None:
    if x.dim() not in (3, 4) or not x.is_contiguous():
        raise ValueError(f"tokens must be a contiguous (B, 1+N, C), (B, N, C) or (B, gh, gw, C) tensor, "
                         f"got {tuple(x.shape)}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"dtype {x.dtype} not supported; use one of {_DTYPES}")
    c = x.shape[-1]
    gh, gw = grid
    if x.dim() == 4 and tuple(x.shape[1:3]) != (gh, gw):
        raise ValueError(f"a {tuple(x.shape[1:3])} map is not the {gh}x{gw} grid")
    if x.dim() == 3 and x.shape[1] not in (gh * gw, 1 + gh * gw):
        raise ValueError(f"{x.shape[1]} tokens != {gh}*{gw} (a map) or 1 + {gh}*{gw} (class token + grid)")
    if conv_weight.dim() != 4 or conv_weight.shape[1] != c or conv_weight.shape[2:] not in ((1, 1), (3, 3)):
        raise ValueError(f"conv_weight must be (d, {c}, k, k) with k in (1, 3), got {tuple(conv_weight.shape)}")
    if not (conv_weight.is_contiguous() or _is_packed(conv_weight)):
        raise ValueError("conv_weight must be contiguous or packed with pack_conv_weight()")
    d = conv_weight.shape[0]
    if proj_weight.shape != (c, d) or not proj_weight.is_contiguous():
        raise ValueError(f"proj_weight must be a contiguous ({c}, {d}) tensor, got {tuple(proj_weight.shape)}")
    for name, (v, size) in vectors.items():
        if v.shape != (size,) or not v.is_contiguous():
            raise ValueError(f"{name} must be a contiguous ({size},) tensor, got {tuple(v.shape)}")
    for t in (conv_weight, proj_weight, *(v for v, _ in vectors.values())):
        if t.dtype != x.dtype or t.device != x.device:
            raise TypeError(f"all parameters must be {x.dtype} on {x.device}, got {t.dtype} on {t.device}")
    if out is not None and (out.shape != x.shape or out.dtype != x.dtype or out.device != x.device
                            or not out.is_contiguous()):
        raise ValueError("out must be a contiguous tensor like the input")


def prefix_tokens(x: torch.Tensor, grid: Grid) -> int:
    """Tokens before the grid: 1 for (B, 1+N, C) tokens with a class token, 0 for a map."""
    return 0 if x.dim() == 4 else int(x.shape[1]) - grid[0] * grid[1]


def _launch(x, ln_weight, ln_bias, ln_eps, conv_weight, conv_bias, proj_weight, proj_bias, grid, out, config):
    batch, c = x.shape[0], x.shape[-1]
    d, _, k, _ = conv_weight.shape
    out = torch.empty_like(x) if out is None else out
    meta = dict(
        C=c, D=d, GH=grid[0], GW=grid[1], KS=k, LN_RESIDUAL=ln_weight is not None, PREFIX=prefix_tokens(x, grid),
        DOT_FP32=INTERPRETED and x.dtype == torch.bfloat16,  # bf16 tl.dot is wrong in the interpreter
        PRECISION="tf32x3" if x.dtype == torch.float32 else "ieee",
        BLOCK_D=max(16, triton.next_power_of_2(d)),
    )
    args = (x, out, ln_weight, ln_bias, conv_weight, conv_bias, proj_weight, proj_bias, ln_eps, batch,
            conv_weight.stride(0), conv_weight.stride(1), conv_weight.stride(3))
    if config is None and INTERPRETED:  # the autotuner would time configs in the interpreter
        config = configs_for(x.dtype)[0]
    if config is None:
        launch_grid = lambda m: (triton.cdiv(grid[0] * grid[1], m["BLOCK_M"]), batch)  # noqa: E731
        _conv_block_autotuned[launch_grid](*args, **meta)
    else:
        cfg = CONFIGS[config]
        launch_grid = (triton.cdiv(grid[0] * grid[1], cfg.kwargs["BLOCK_M"]), batch)
        _conv_block_kernel[launch_grid](*args, **meta, **cfg.kwargs, num_warps=cfg.num_warps,
                                        num_stages=cfg.num_stages)
    return out


def fused_conv_block(
    x: torch.Tensor, ln_weight: torch.Tensor, ln_bias: torch.Tensor, ln_eps: float,
    conv_weight: torch.Tensor, conv_bias: torch.Tensor, proj_weight: torch.Tensor, proj_bias: torch.Tensor,
    grid: Grid, *, out: torch.Tensor | None = None, config: str | None = None,
) -> torch.Tensor:
    """x + attn(LayerNorm(x)) for a conv block in one launch: (B, 1+N, C) -> (B, 1+N, C) (or a map, see
    the module docstring).
    config: a CONFIGS name to skip autotuning; CPU tensors fall back to conv_block_reference."""
    c = x.shape[-1]
    vectors = {"ln_weight": (ln_weight, c), "ln_bias": (ln_bias, c),
               "conv_bias": (conv_bias, conv_weight.shape[0]), "proj_bias": (proj_bias, c)}
    _check(x, grid, conv_weight, vectors, proj_weight, out)
    if not use_triton(x):
        ref = conv_block_reference(x, ln_weight, ln_bias, ln_eps, conv_weight, conv_bias, proj_weight, proj_bias, grid)
        return ref if out is None else out.copy_(ref)
    return _launch(x, ln_weight, ln_bias, float(ln_eps), conv_weight, conv_bias, proj_weight, proj_bias,
                   grid, out, config)


def fused_conv_attn(
    u: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor,
    proj_weight: torch.Tensor, proj_bias: torch.Tensor,
    grid: Grid, *, out: torch.Tensor | None = None, config: str | None = None,
) -> torch.Tensor:
    """attn(u) of a conv block (u already normalized, no residual, class token copied):
    (B, 1+N, C) -> (B, 1+N, C), or a map without class token (B, N, C) / (B, gh, gw, C) -> same shape.
    CPU tensors fall back to conv_attn_reference."""
    c = u.shape[-1]
    vectors = {"conv_bias": (conv_bias, conv_weight.shape[0]), "proj_bias": (proj_bias, c)}
    _check(u, grid, conv_weight, vectors, proj_weight, out)
    if not use_triton(u):
        ref = conv_attn_reference(u, conv_weight, conv_bias, proj_weight, proj_bias, grid)
        return ref if out is None else out.copy_(ref)
    return _launch(u, None, None, None, conv_weight, conv_bias, proj_weight, proj_bias, grid, out, config)
