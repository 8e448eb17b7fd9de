"""The TensorRT-ordered conv-attention entry: same results as the reference (CPU interpreter or CUDA),
and its PTX for sm_80/sm_90 has exactly the parameters TensorRT passes: 5 input pointers, the int32
batch, 1 output pointer (Triton's hidden scratch pointers stripped, which ptxas confirms unused).

The compile runs in a subprocess: this process imports the kernels under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spvit_kernels
from spvit_kernels import conv_attn_reference
from spvit_kernels import conv_block as cb
from spvit_kernels import trt_kernel as tk

DEVICE = "cuda" if torch.cuda.is_available() and not cb.INTERPRETED else "cpu"
pytestmark = [
    pytest.mark.kernels,
]
needs_kernel = pytest.mark.skipif(DEVICE == "cpu" and not cb.INTERPRETED,
                                  reason="no CUDA and spvit_kernels was imported without TRITON_INTERPRET=1")


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("ks,grid,c,prefix", [(3, (3, 5), 192, 1), (1, (4, 4), 128, 1), (3, (4, 3), 96, 0)])
def test_trt_entry_matches_reference(ks: int, grid: tuple[int, int], c: int, prefix: int, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(ks)
    d, batch = 64, 2
    u = torch.randn(batch, 1 + grid[0] * grid[1], c, generator=g)
    if not prefix:  # a Swin map: (B, gh, gw, C), no class token
        u = u[:, 1:].reshape(batch, *grid, c).contiguous()
    w = torch.randn(d, c, ks, ks, generator=g) / (c * ks * ks) ** 0.5
    cb_, pw, pb = 0.2 * torch.randn(d, generator=g), torch.randn(c, d, generator=g) / d**0.5, torch.randn(c, generator=g)
    t = {k: v.to(DEVICE, dtype) for k, v in dict(u=u, w=w, cb=cb_, pw=pw, pb=pb).items()}
    packed = t["w"].permute(2, 3, 1, 0).contiguous()  # (k, k, C, d), as the plugin node stores it
    out = torch.full_like(t["u"], float("nan"))
    tk.launch_trt_kernel(t["u"], packed, t["cb"], t["pw"], t["pb"], grid, out)
    want = conv_attn_reference(*(t[k].double() for k in ("u", "w", "cb", "pw", "pb")), grid)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3}[dtype]
    scale = want.square().mean().sqrt().item()
    torch.testing.assert_close(out.double(), want, atol=tol * scale, rtol=tol)


SAMPLE_PTX = textwrap.dedent("""\
    .version 8.8
    .target sm_90a
    .visible .entry k(
    \t.param .u64 .ptr .global .align 1 k_param_0,
    \t.param .u32 k_param_1,
    \t.param .u64 .ptr .global .align 1 k_param_2,
    \t.param .u64 .ptr .global .align 1 k_param_3
    )
    {
    \tld.param.u64 %rd1, [k_param_0];
    \tld.param.u32 %r1, [k_param_1];
    }
    """)


def test_strip_hidden_params_and_rename() -> None:
    ptx, removed = tk.strip_hidden_params(SAMPLE_PTX, "k", 2)
    assert removed == 2 and tk.entry_params(ptx, "k") == [".param .u64 .ptr .global .align 1 k_param_0",
                                                          ".param .u32 k_param_1"]
    renamed = tk.rename_entry(ptx, "k", "spvit_x")
    assert ".entry spvit_x(" in renamed and "[spvit_x_param_1]" in renamed and "k_param" not in renamed
    assert ".target sm_90a" in renamed  # other identifiers untouched
    with pytest.raises(ValueError, match="hidden parameters"):
        tk.strip_hidden_params(SAMPLE_PTX, "k", 1)  # the body reads k_param_1
    with pytest.raises(ValueError, match="no .entry"):
        tk.entry_params(SAMPLE_PTX, "other")


def test_triton_older_than_3_3_is_refused_in_one_line(monkeypatch) -> None:
    """3.0-3.2's ASTSource takes `constants=` and an AttrsDescriptor; our call is 3.3's (constexprs, dict attrs)."""
    for old in ("3.0.0", "3.1.0", "3.2.0"):
        with pytest.raises(RuntimeError, match=rf"Triton {old} is too old .*>= 3.3") as e:
            tk.check_triton(old)
        assert "\n" not in str(e.value)
    for ok in ("3.3.0", "3.8.0", "4.0.1"):
        tk.check_triton(ok)
    monkeypatch.setattr(tk.triton, "__version__", "3.2.0")
    with pytest.raises(RuntimeError, match="too old"):
        tk.compile_trt_kernel(3, "fp16", 90)


def test_bundled_ptx_version_is_read_from_the_installed_triton() -> None:
    """Triton >= 3.3 (what the AOT path requires) always tells its ptxas version through one probe."""
    v = tk.bundled_ptx_version(90)
    assert isinstance(v, int) and 80 <= v < 200


def test_bundled_ptx_version_falls_back_to_ptxas_version_text(monkeypatch) -> None:
    from triton.backends.nvidia import compiler as nv

    monkeypatch.setattr(nv, "get_ptxas", lambda cc: (_ for _ in ()).throw(AttributeError("old triton")))
    monkeypatch.setattr(nv, "get_ptxas_version", lambda cc=80: "ptxas: NVIDIA (R) ... Cuda compilation tools, "
                                                                "release 12.8, V12.8.93")
    assert tk.bundled_ptx_version(90) == nv.ptx_get_version("12.8")


def test_trt_configs_fit_the_plugin_launch() -> None:
    assert tk.trt_configs("fp16") == ["m64_k64_n64_w4_s3", "m32_k128_n64_w4_s2"]
    assert tk.trt_configs("fp32") == ["tf32x3_m32_k32_n64_w4_s2"]
    assert all(set(tk.trt_configs(d)) <= set(cb.configs_for(tk.TRT_DTYPES[d])) for d in tk.TRT_DTYPES)
    with pytest.raises(ValueError):
        tk.trt_configs("bf16")


COMPILE = """
import json, subprocess, sys, tempfile, pathlib, triton
from spvit_kernels.trt_kernel import compile_trt_kernel, entry_params, trt_configs
bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
for cc in (80, 90):
    for dtype in ("fp16", "fp32"):
        for config in trt_configs(dtype):
            for ks, c, prefix in ((3, 768, 1), (1, 192, 1), (3, 96, 0)):
                k = compile_trt_kernel(ks, dtype, cc, config, channels=c, head_dim=64, grid=(14, 14), prefix=prefix)
                with tempfile.TemporaryDirectory() as tmp:
                    src = pathlib.Path(tmp) / "k.ptx"
                    src.write_text(k.ptx)
                    arch = f"sm_{cc}a" if cc >= 90 else f"sm_{cc}"
                    p = subprocess.run([str(bin_dir / "ptxas"), f"--gpu-name={arch}", str(src), "-o", str(src.with_suffix(".cubin"))],
                                       capture_output=True, text=True)
                row = {**k.to_dict(), "entry_params": entry_params(k.ptx, k.kernel_name), "ptxas_rc": p.returncode,
                       "ptxas_err": p.stderr[-300:], "target_line": [l for l in k.ptx.splitlines() if l.startswith(".target")]}
                print(json.dumps(row), flush=True)
"""


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    kernels_dir = str(Path(spvit_kernels.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([kernels_dir, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", COMPILE], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_ptx_has_the_trt_calling_convention(compiled: list[dict]) -> None:
    assert len(compiled) == 2 * 3 * 3  # cc x (fp16 configs + fp32 config) x variants
    assert {r["prefix"] for r in compiled} == {0, 1}  # class-token tokens and Swin maps
    for r in compiled:
        params = r["entry_params"]
        assert len(params) == len(tk.TRT_PARAMS) == 7, r["kernel_name"]
        assert [p.split()[1] for p in params] == [".u64"] * 5 + [".u32"] + [".u64"]  # 5 ptrs, int32 B, 1 ptr
        assert r["hidden_params_removed"] == 2
        assert r["target_line"] == [".target sm_90a" if r["cc"] == 90 else ".target sm_80"]
        assert r["ptxas_rc"] == 0, r["ptxas_err"]  # the stripped PTX assembles: scratch params were unused
        assert r["shared_bytes"] <= tk.TRT_SHARED_LIMIT and r["threads"] == 32 * r["num_warps"]
        assert r["kernel_name"] == tk.entry_name(r["ks"], r["dtype"], r["channels"], 64, (14, 14), r["config"],
                                                 r["prefix"])
        assert r["grid_x"] == -(-196 // cb.CONFIGS[r["config"]].kwargs["BLOCK_M"])
