"""Fused conv-block kernels vs a float64 evaluation of the reference, and the reference
vs naively composed torch.nn modules. Runs in the Triton CPU interpreter (conftest)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spvit_kernels import conv_attn_reference, conv_block_reference
from spvit_kernels import conv_block as cb

DEVICE = "cuda" if torch.cuda.is_available() and not cb.INTERPRETED else "cpu"
pytestmark = [
    pytest.mark.kernels,
    pytest.mark.skipif(DEVICE == "cpu" and not cb.INTERPRETED,
                       reason="no CUDA and spvit_kernels was imported without TRITON_INTERPRET=1"),
]
# (atol as a fraction of the reference's RMS, rtol): a few ulps of the dtype
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
ENTRIES = ["block", "attn"]


def make_inputs(batch: int, c: int, d: int, ks: int, grid: tuple[int, int], dtype: torch.dtype,
                seed: int = 0) -> dict[str, torch.Tensor]:
    """Tokens with per-channel offsets and one outlier channel (like a ViT residual stream)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    x = rand(batch, 1 + grid[0] * grid[1], c) + rand(c)
    x[..., 3] *= 20.0
    tensors = {
        "x": x, "ln_weight": 1 + 0.2 * rand(c), "ln_bias": 0.2 * rand(c),
        "conv_weight": rand(d, c, ks, ks) / (c * ks * ks) ** 0.5, "conv_bias": 0.2 * rand(d),
        "proj_weight": rand(c, d) / d**0.5, "proj_bias": 0.2 * rand(c),
    }
    return {k: v.to(DEVICE, dtype) for k, v in tensors.items()}


def run(entry: str, t: dict[str, torch.Tensor], grid: tuple[int, int], fn_block=cb.fused_conv_block,
        fn_attn=cb.fused_conv_attn, **kw) -> torch.Tensor:
    tail = (t["conv_weight"], t["conv_bias"], t["proj_weight"], t["proj_bias"], grid)
    if entry == "block":
        return fn_block(t["x"], t["ln_weight"], t["ln_bias"], 1e-6, *tail, **kw)
    return fn_attn(t["x"], *tail, **kw)


def check(entry: str, t: dict[str, torch.Tensor], grid: tuple[int, int], **kw) -> torch.Tensor:
    """Run into a NaN-poisoned buffer (unwritten elements fail) and compare with float64."""
    out = torch.full_like(t["x"], float("nan"))
    got = run(entry, t, grid, out=out, **kw)
    assert got is out
    want = run(entry, {k: v.double() for k, v in t.items()}, grid, conv_block_reference, conv_attn_reference)
    atol, rtol = TOL[t["x"].dtype]
    scale = want.square().mean().sqrt().item()
    torch.testing.assert_close(got.double(), want, atol=atol * scale, rtol=rtol)
    return got


@pytest.mark.parametrize("ks", [1, 3])
def test_reference_matches_naive_modules(ks: int) -> None:
    c, d, (gh, gw), batch = 24, 8, (3, 5), 2
    torch.manual_seed(0)
    ln, conv, proj = nn.LayerNorm(c, eps=1e-6), nn.Conv2d(c, d, ks, padding=ks // 2), nn.Linear(d, c)
    for p in ln.parameters():
        nn.init.normal_(p)
    ln, conv, proj = ln.double(), conv.double(), proj.double()
    x = torch.randn(batch, 1 + gh * gw, c, dtype=torch.float64)
    with torch.no_grad():
        u = ln(x)
        image = torch.empty(batch, c, gh, gw, dtype=torch.float64)
        for i in range(gh):
            for j in range(gw):
                image[:, :, i, j] = u[:, 1 + i * gw + j]
        y = torch.relu(conv(image))
        want = x.clone()
        want[:, 0] += u[:, 0]
        for i in range(gh):
            for j in range(gw):
                want[:, 1 + i * gw + j] += proj(y[:, :, i, j])
        got = conv_block_reference(x, ln.weight, ln.bias, 1e-6, conv.weight, conv.bias, proj.weight, proj.bias,
                                   (gh, gw))
        attn = conv_attn_reference(u, conv.weight, conv.bias, proj.weight, proj.bias, (gh, gw))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(x + attn, want, atol=1e-12, rtol=1e-12)


SHAPES = [(192, (5, 7), 3), (384, (7, 7), 1), (768, (3, 3), 3)]  # (C, grid, batch); d = 64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("ks", [1, 3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"C{s[0]}-{s[1][0]}x{s[1][1]}-B{s[2]}")
@pytest.mark.parametrize("entry", ENTRIES)
def test_kernel_matches_float64(entry: str, shape: tuple, ks: int, dtype: torch.dtype) -> None:
    c, grid, batch = shape
    check(entry, make_inputs(batch, c, 64, ks, grid, dtype, seed=ks), grid)


@pytest.mark.parametrize("config", list(cb.CONFIGS))
@pytest.mark.parametrize("entry", ENTRIES)
def test_every_named_config(entry: str, config: str) -> None:
    """9x9 = 81 patches: several tiles per image for BLOCK_M < 128, a partial last tile."""
    dtype = torch.float32 if config in cb.configs_for(torch.float32) else torch.float16
    check(entry, make_inputs(1, 192, 64, 3, (9, 9), dtype, seed=1), (9, 9), config=config)


def test_autotune_only_tries_configs_meant_for_the_dtype() -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        names = cb.configs_for(dtype)
        kept = cb._prune(list(cb.CONFIGS.values()), {"x_ptr": torch.empty(1, dtype=dtype)})
        assert names and kept == [cb.CONFIGS[n] for n in names]
    assert set(cb.configs_for(torch.float16)).isdisjoint(cb.configs_for(torch.float32))


@pytest.mark.parametrize("entry", ENTRIES)
def test_ragged_channels_and_head_dim(entry: str) -> None:
    """C = 144 is not a multiple of BLOCK_K/BLOCK_N and d = 48 not a power of two: masked tails."""
    check(entry, make_inputs(2, 144, 48, 3, (4, 5), torch.float16, seed=2), (4, 5))


def test_packed_weight_gives_identical_output() -> None:
    t = make_inputs(1, 192, 64, 3, (5, 7), torch.float16, seed=3)
    plain = run("block", t, (5, 7))
    packed = run("block", {**t, "conv_weight": cb.pack_conv_weight(t["conv_weight"])}, (5, 7))
    assert packed.dtype == torch.float16 and packed.shape == t["x"].shape
    torch.testing.assert_close(packed, plain, atol=0, rtol=0)


@pytest.mark.parametrize("entry", ENTRIES)
def test_cpu_without_interpreter_falls_back_to_reference(entry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cb, "INTERPRETED", False)
    t = make_inputs(2, 32, 16, 3, (3, 4), torch.float32)
    t = {k: v.cpu() for k, v in t.items()}
    assert not cb.use_triton(t["x"])
    out = torch.full_like(t["x"], float("nan"))
    assert run(entry, t, (3, 4), out=out) is out
    want = run(entry, t, (3, 4), conv_block_reference, conv_attn_reference)
    torch.testing.assert_close(out, want, atol=0, rtol=0)


def test_rejects_bad_inputs() -> None:
    t = make_inputs(1, 32, 16, 3, (3, 4), torch.float16)
    with pytest.raises(ValueError, match="tokens"):
        run("attn", t, (4, 4))
    with pytest.raises(ValueError, match="contiguous"):
        run("attn", {**t, "x": t["x"].transpose(1, 2).contiguous().transpose(1, 2)}, (3, 4))
    with pytest.raises(ValueError, match="k in"):
        run("attn", {**t, "conv_weight": F.pad(t["conv_weight"], (1, 1, 1, 1))}, (3, 4))
    with pytest.raises(ValueError, match="packed"):
        run("attn", {**t, "conv_weight": t["conv_weight"].permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)},
            (3, 4))
    with pytest.raises(TypeError, match="parameters"):
        run("block", {**t, "ln_weight": t["ln_weight"].float()}, (3, 4))
    with pytest.raises(TypeError, match="not supported"):
        run("attn", {k: v.double() for k, v in t.items()}, (3, 4))


@pytest.mark.parametrize("layout", ["tokens", "map"])
@pytest.mark.parametrize("ks", [1, 3])
@pytest.mark.parametrize("entry", ENTRIES)
def test_maps_without_class_token(entry: str, ks: int, layout: str) -> None:
    """Swin's conv blocks: no class-token row (PREFIX 0), as (B, N, C) tokens or a (B, gh, gw, C) map."""
    grid = (5, 7)
    t = make_inputs(2, 96, 32, ks, grid, torch.float32)
    t["x"] = t["x"][:, 1:].contiguous()
    if layout == "map":
        t["x"] = t["x"].reshape(2, *grid, 96)
    got = check(entry, t, grid)
    # an independent reading: the conv on the NCHW image, no token bookkeeping
    u = t["x"].double().reshape(2, *grid, 96)
    if entry == "block":
        u = F.layer_norm(u, (96,), t["ln_weight"].double(), t["ln_bias"].double(), 1e-6)
    img = F.relu(F.conv2d(u.permute(0, 3, 1, 2), t["conv_weight"].double(), t["conv_bias"].double(), padding=ks // 2))
    want = F.linear(img.permute(0, 2, 3, 1), t["proj_weight"].double(), t["proj_bias"].double())
    if entry == "block":
        want = want + t["x"].double().reshape(2, *grid, 96)
    torch.testing.assert_close(got.double().reshape(want.shape), want, atol=1e-4, rtol=1e-5)
