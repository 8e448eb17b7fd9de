"""The conv-attention kernel with TensorRT's AOT plugin calling convention, and its compile to PTX.

TensorRT launches an ahead-of-time plugin kernel with (input pointers..., int32 extras...,
output pointers...) and nothing else: `conv_attn_trt_kernel(u, conv_weight, conv_bias,
proj_weight, proj_bias, B, out)`, a thin wrapper over `conv_block._conv_block_kernel`
(no LayerNorm, no residual; conv weight packed (k, k, C, d) by `pack_conv_weight`; C, d,
grid and tiles constexpr). `compile_trt_kernel` compiles it for sm_<cc> (no GPU needed)
and strips the hidden Triton scratch parameters, which TensorRT does not pass. It needs Triton >= 3.3:
`ASTSource(constexprs=..., attrs={path: [[attr, value]]})` is 3.3's signature (3.0-3.2 take
`constants=` and an `AttrsDescriptor`), so older Tritons get a one-line error, not a failed build.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import triton
import triton.language as tl

from . import conv_block
from .reference import Grid

# The PTX entry's parameters, in the order TensorRT passes them (plugin inputs, extras, outputs).
TRT_PARAMS = ("u_ptr", "cw_ptr", "cb_ptr", "pw_ptr", "pb_ptr", "B", "out_ptr")
TRT_INPUTS, TRT_EXTRAS, TRT_OUTPUTS = TRT_PARAMS[:5], TRT_PARAMS[5:6], TRT_PARAMS[6:]
# TensorRT is not known to raise a kernel's dynamic shared memory limit above the default.
TRT_SHARED_LIMIT = 48 * 1024
TRT_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
# CONFIGS within TRT_SHARED_LIMIT (m128_k64_n128_w8_s2 needs 64 KiB); a plugin tactic is an index + 1 here.
TRT_CONFIGS = {"fp16": ("m64_k64_n64_w4_s3", "m32_k128_n64_w4_s2"), "fp32": ("tf32x3_m32_k32_n64_w4_s2",)}
MIN_TRITON = (3, 3)  # ASTSource(fn, signature, constexprs, attrs) with dict attrs


def triton_version(version: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version if version is not None else str(triton.__version__))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_triton(version: str | None = None) -> None:
    """RuntimeError (one line) unless this Triton compiles the AOT kernel (>= 3.3)."""
    v = version if version is not None else str(triton.__version__)
    if triton_version(v) < MIN_TRITON:
        raise RuntimeError(f"Triton {v} is too old for the TensorRT plugin kernels: they need Triton >= "
                           f"{MIN_TRITON[0]}.{MIN_TRITON[1]} (pip install 'triton>={MIN_TRITON[0]}.{MIN_TRITON[1]}', "
                           "or a torch that brings it), or build without --plugins")


def bundled_ptx_version(cc: int) -> int | None:
    """The PTX ISA Triton's bundled ptxas emits for sm_<cc> (84 for 8.4), None when it cannot be read."""
    try:
        from triton.backends.nvidia import compiler as nv
    except Exception:  # noqa: BLE001 - no NVIDIA backend in this Triton
        return None
    probes = (  # private Triton APIs, newest first: unknown rather than wrong
        lambda: nv.get_ptxas(cc).version,  # knobs-era Triton: the tool's "12.8"
        lambda: re.search(r"release (\d+\.\d+)", nv.get_ptxas_version(cc)).group(1),  # its `ptxas --version`
        lambda: nv._path_to_binary("ptxas")[1],  # Triton 3.3: (path, "12.8")
    )
    for probe in probes:
        try:
            return int(nv.ptx_get_version(probe()))
        except Exception:  # noqa: BLE001 - try the next probe
            continue
    return None


@triton.jit
def conv_attn_trt_kernel(
    u_ptr, cw_ptr, cb_ptr, pw_ptr, pb_ptr,  # plugin inputs: tokens (B, 1+N, C), packed conv (k, k, C, d), ...
    B,  # int32 extra: batch size (the launch grid's y; unused in the body)
    out_ptr,  # plugin output (B, 1+N, C)
    C: tl.constexpr, D: tl.constexpr, GH: tl.constexpr, GW: tl.constexpr, KS: tl.constexpr,
    DOT_FP32: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    PREFIX: tl.constexpr = 1,  # 1: (B, 1+N, C) with a class token; 0: a map (B, N, C) / (B, GH, GW, C)
):
    """attn(u) of a conv block; grid (cdiv(GH * GW, BLOCK_M), B, 1)."""
    conv_block._conv_block_kernel(
        u_ptr, out_ptr, None, None, cw_ptr, cb_ptr, pw_ptr, pb_ptr, None, B,
        1, D, C * D,  # packed (k, k, C, d) strides of d, c and a tap
        C, D, GH, GW, KS, False, DOT_FP32, PRECISION, BLOCK_M, BLOCK_K, BLOCK_N, BLOCK_D, PREFIX,
    )


def trt_configs(dtype: str) -> list[str]:
    """CONFIGS names usable for a TensorRT plugin of this dtype (fp16 or fp32), default first."""
    if dtype not in TRT_DTYPES:
        raise ValueError(f"dtype {dtype!r} not in {sorted(TRT_DTYPES)}")
    return list(TRT_CONFIGS[dtype])


def _constexprs(dtype: str, ks: int, channels: int, head_dim: int, grid: Grid, config: str,
                dot_fp32: bool = False, prefix: int = 1) -> dict[str, Any]:
    return {
        "C": channels, "D": head_dim, "GH": grid[0], "GW": grid[1], "KS": ks, "DOT_FP32": dot_fp32, "PREFIX": prefix,
        "PRECISION": "tf32x3" if dtype == "fp32" else "ieee", "BLOCK_D": max(16, triton.next_power_of_2(head_dim)),
        **conv_block.CONFIGS[config].kwargs,
    }


def launch_trt_kernel(u: torch.Tensor, packed_conv: torch.Tensor, conv_bias: torch.Tensor, proj_weight: torch.Tensor,
                      proj_bias: torch.Tensor, grid: Grid, out: torch.Tensor, config: str | None = None) -> torch.Tensor:
    """Launch the TensorRT-ordered entry from PyTorch as TensorRT would (tests; CUDA or interpreter).
    packed_conv: a contiguous (k, k, C, d) tensor, i.e. `pack_conv_weight(w).permute(2, 3, 1, 0)`."""
    k, _, c, d = packed_conv.shape
    dtype = {torch.float16: "fp16", torch.float32: "fp32", torch.bfloat16: "fp16"}[u.dtype]
    config = config or conv_block.configs_for(u.dtype)[0]
    cfg = conv_block.CONFIGS[config]
    meta = _constexprs(dtype, k, c, d, grid, config,
                       dot_fp32=conv_block.INTERPRETED and u.dtype == torch.bfloat16,
                       prefix=conv_block.prefix_tokens(u, grid))
    launch = (triton.cdiv(grid[0] * grid[1], cfg.kwargs["BLOCK_M"]), u.shape[0])
    conv_attn_trt_kernel[launch](u, packed_conv.contiguous(), conv_bias, proj_weight, proj_bias, u.shape[0], out,
                                 **meta, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


@dataclass(frozen=True)
class TrtKernel:
    """What an `aot_impl` hands TensorRT: the entry name, the PTX, and the launch it needs:
    grid (grid_x, batch, 1), block (threads, 1, 1), shared_bytes of dynamic shared memory."""

    kernel_name: str
    cc: int
    dtype: str
    config: str
    ks: int
    channels: int
    head_dim: int
    grid: tuple[int, int]
    grid_x: int
    threads: int
    shared_bytes: int
    num_warps: int
    params: list[str]  # the PTX entry's parameters, in order (TRT_PARAMS)
    hidden_params_removed: int  # Triton's scratch pointers stripped from the entry
    ptx_version: str  # the PTX ISA `.version`: the driver must support it
    ptx: str = field(repr=False)
    prefix: int = 1  # tokens before the grid: 1 (class token) or 0 (a map, Swin)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "ptx"}


_ENTRY = r"(\.visible\s+\.entry\s+{name}\s*\()([^)]*)(\))"


def entry_params(ptx: str, name: str) -> list[str]:
    """The `.param` declarations of the PTX entry `name`, in order."""
    m = re.search(_ENTRY.format(name=re.escape(name)), ptx, re.S)
    if m is None:
        raise ValueError(f"no .entry {name} in the PTX")
    return [p.strip() for p in m.group(2).split(",") if p.strip()]


def strip_hidden_params(ptx: str, name: str, keep: int) -> tuple[str, int]:
    """Keep only the first `keep` parameters of entry `name` (Triton appends scratch pointers that
    TensorRT never passes); returns the new PTX and how many were removed. Refuses if the body
    reads a removed parameter."""
    m = re.search(_ENTRY.format(name=re.escape(name)), ptx, re.S)
    if m is None:
        raise ValueError(f"no .entry {name} in the PTX")
    params = [p.strip() for p in m.group(2).split(",") if p.strip()]
    if len(params) < keep:
        raise ValueError(f".entry {name} has {len(params)} parameters, expected at least {keep}")
    dropped = [p.split()[-1] for p in params[keep:]]
    body = ptx[m.end():]
    used = [p for p in dropped if re.search(rf"\[{re.escape(p)}\]", body)]
    if used:
        raise ValueError(f"the kernel reads Triton's hidden parameters {used}; TensorRT cannot pass them")
    head = m.group(1) + "\n\t" + ",\n\t".join(params[:keep]) + "\n" + m.group(3)
    return ptx[:m.start()] + head + body, len(dropped)


def rename_entry(ptx: str, old: str, new: str) -> str:
    """Rename PTX entry `old` (and its `<old>_param_<i>` parameters) to `new`."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", new):
        raise ValueError(f"{new!r} is not a PTX identifier")
    return re.sub(rf"(?<![\w$.]){re.escape(old)}(?=_param_\d|\b)", new, ptx)


def entry_name(ks: int, dtype: str, channels: int, head_dim: int, grid: Grid, config: str, prefix: int = 1) -> str:
    """A variant's entry name: unique per compiled variant, so several can share an engine."""
    tail = "" if prefix == 1 else "_map"  # no class token (Swin)
    return f"spvit_conv_attn_k{ks}_{dtype}_c{channels}_d{head_dim}_{grid[0]}x{grid[1]}_{config}{tail}"


def compile_trt_kernel(ks: int, dtype: str, cc: int | None = None, config: str | None = None, *,
                       channels: int = 768, head_dim: int = 64, grid: Grid = (14, 14),
                       ptx_version: int | None = None, prefix: int = 1) -> TrtKernel:
    """Compile `conv_attn_trt_kernel` to PTX for sm_<cc> (None: the current GPU) with the entry's
    parameters exactly TRT_PARAMS. dtype: fp16 or fp32 (tokens and weights); config: a CONFIGS name."""
    from triton.backends.compiler import GPUTarget

    check_triton()
    fn = conv_attn_trt_kernel
    if not isinstance(fn, triton.runtime.JITFunction):
        raise RuntimeError("AOT compile needs TRITON_INTERPRET unset before spvit_kernels is imported")
    if ks not in (1, 3):
        raise ValueError(f"kernel size {ks} not in (1, 3)")
    config = trt_configs(dtype)[0] if config is None else config
    if config not in trt_configs(dtype):
        raise ValueError(f"config {config!r} is not meant for {dtype}; use one of {trt_configs(dtype)}")
    cfg = conv_block.CONFIGS[config]
    ptr = f"*{dtype}"
    signature = {name: ("i32" if name == "B" else ptr) for name in TRT_PARAMS}
    if prefix not in (0, 1):
        raise ValueError(f"prefix {prefix} not in (0, 1): tokens before the grid (a class token or none)")
    constexprs = _constexprs(dtype, ks, channels, head_dim, grid, config, prefix=prefix)
    signature.update({name: "constexpr" for name in fn.arg_names if name not in signature})
    pointers = [i for i, name in enumerate(fn.arg_names) if signature[name].startswith("*")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in pointers}  # TensorRT buffers are 256-byte aligned
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options: dict[str, Any] = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    if ptx_version is not None:
        options["ptx_version"] = ptx_version
    target = GPUTarget("cuda", cc, 32) if cc is not None else None
    compiled = triton.compile(src, target=target, options=options)
    md = compiled.metadata
    if getattr(md, "global_scratch_size", 0) or getattr(md, "profile_scratch_size", 0):
        raise RuntimeError("the kernel needs Triton scratch memory, which a TensorRT AOT plugin cannot provide")
    if md.shared > TRT_SHARED_LIMIT:
        raise RuntimeError(f"config {config} needs {md.shared} bytes of shared memory, over the "
                           f"{TRT_SHARED_LIMIT} a TensorRT AOT plugin launch gets; pick another config")
    if getattr(md, "num_ctas", 1) != 1:
        raise RuntimeError("TensorRT launches no thread-block clusters; num_ctas must be 1")
    ptx, removed = strip_hidden_params(compiled.asm["ptx"], md.name, len(TRT_PARAMS))
    name = entry_name(ks, dtype, channels, head_dim, grid, config, prefix)
    ptx = rename_entry(ptx, md.name, name)
    version = re.search(r"^\s*\.version\s+(\S+)", ptx, re.M)
    arch = int(re.search(r"^\s*\.target\s+sm_(\d+)", ptx, re.M).group(1))
    return TrtKernel(
        kernel_name=name, cc=arch, dtype=dtype, config=config, ks=ks, channels=channels, head_dim=head_dim,
        grid=(int(grid[0]), int(grid[1])), grid_x=triton.cdiv(grid[0] * grid[1], cfg.kwargs["BLOCK_M"]),
        threads=md.num_warps * 32, shared_bytes=md.shared, num_warps=md.num_warps, params=list(TRT_PARAMS),
        hidden_params_removed=removed, ptx_version=version.group(1) if version else "", ptx=ptx, prefix=prefix,
    )
