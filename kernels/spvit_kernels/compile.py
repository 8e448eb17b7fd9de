"""Ahead-of-time compile of the conv-block kernel to PTX/cubin for a GPU target (no GPU
needed): registers, spills, shared memory and tensor-core instructions per variant,
and PTX + launch metadata files for a TensorRT plugin.

CLI: python -m spvit_kernels.compile --cc 80,90 --out DIR
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget

from . import conv_block

SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}  # opt-in max per block
TENSOR_CORE_OPS = ("HGMMA", "HMMA")
_BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class CompileReport:
    """What one compiled variant costs and how to launch it: grid (grid_x, batch, 1), block
    (threads, 1, 1), shared_bytes of dynamic shared memory, params in order (pointers 16-byte
    aligned, conv weight packed by pack_conv_weight, null for the two scratch pointers)."""

    name: str
    cc: int
    kernel_name: str  # .entry in the PTX
    registers: int  # per thread
    spill_stores: int  # bytes, from ptxas -v
    spill_loads: int
    shared_bytes: int  # dynamic shared memory to request at launch
    shared_limit: int
    num_warps: int
    num_stages: int
    block_m: int  # patch rows per program
    grid_x: int  # launch grid = (grid_x, batch, 1), grid_x = ceil(gh * gw / block_m)
    threads: int  # launch block = (threads, 1, 1)
    num_params: int  # PTX params: the user args, then 2 scratch pointers (pass null)
    params: list[str]
    tensor_core_ops: dict[str, int]  # SASS opcode -> count
    constexprs: dict[str, object]
    ptx: str = field(repr=False)

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads

    @property
    def tensor_cores(self) -> bool:
        return sum(self.tensor_core_ops.values()) > 0

    def write(self, out_dir: Path | str) -> Path:
        """Write <name>.ptx and <name>.json (launch metadata, no PTX); returns the PTX path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.name}.ptx").write_text(self.ptx)
        meta = {k: v for k, v in asdict(self).items() if k != "ptx"}
        (out / f"{self.name}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return out / f"{self.name}.ptx"


def variant_name(ks: int, dtype: str, config: str, ln_residual: bool) -> str:
    return f"{'conv_block' if ln_residual else 'conv_attn'}_k{ks}_{dtype}_{config}"


def _signature(dtype: str, ks: int, channels: int, head_dim: int, grid: tuple[int, int], ln_residual: bool,
               config: str, prefix: int = 1) -> tuple[dict[str, str], dict[str, object]]:
    """Kernel signature and constexprs; conv weight in the packed (k, k, C, d) layout of pack_conv_weight."""
    ptr = f"*{dtype}"
    sig = {name: ptr for name in ("x_ptr", "out_ptr", "cw_ptr", "cb_ptr", "pw_ptr", "pb_ptr")}
    const: dict[str, object] = {
        "stride_wd": 1, "stride_wc": head_dim, "stride_wt": channels * head_dim,
        "C": channels, "D": head_dim, "GH": grid[0], "GW": grid[1], "KS": ks, "PREFIX": prefix,
        "LN_RESIDUAL": ln_residual, "DOT_FP32": False, "PRECISION": "tf32x3" if dtype == "fp32" else "ieee",
        "BLOCK_D": max(16, triton.next_power_of_2(head_dim)), **conv_block.CONFIGS[config].kwargs,
    }
    if ln_residual:
        sig.update(ln_w_ptr=ptr, ln_b_ptr=ptr, eps="fp32")
    else:
        const.update(ln_w_ptr=None, ln_b_ptr=None, eps=None)
    sig["B"] = "i32"
    fn = conv_block._conv_block_kernel
    ordered = {name: sig.get(name, "constexpr") for name in fn.arg_names}
    return ordered, const


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return proc.stdout + proc.stderr


def _ptxas_usage(ptx: str, arch: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from `ptxas -v` with Triton's flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        log = _run(str(_BIN / "ptxas"), "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch}",
                   str(src), "-o", str(Path(tmp) / "k.cubin"))
    regs = int(re.search(r"Used (\d+) registers", log).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return regs, int(spills.group(1)), int(spills.group(2))


def _tensor_core_ops(cubin: bytes) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        sass = _run(str(_BIN / "cuobjdump"), "-sass", str(path))
    ops = re.findall(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)", sass, re.MULTILINE)
    return {op: ops.count(op) for op in TENSOR_CORE_OPS if op in ops}


def compile_variant(ks: int, dtype: str, cc: int, config: str | None = None, *,
                    ln_residual: bool = False, channels: int = 768, head_dim: int = 64,
                    grid: tuple[int, int] = (14, 14)) -> CompileReport:
    """Compile one kernel variant (conv_attn, or conv_block with ln_residual) for sm_<cc>;
    dtype in DTYPES, config a CONFIGS name (default: the dtype's first)."""
    fn = conv_block._conv_block_kernel
    if not isinstance(fn, triton.runtime.JITFunction):
        raise RuntimeError("AOT compile needs TRITON_INTERPRET unset before spvit_kernels is imported")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not in {sorted(DTYPES)}")
    config = conv_block.configs_for(DTYPES[dtype])[0] if config is None else config
    signature, constexprs = _signature(dtype, ks, channels, head_dim, grid, ln_residual, config)
    pointers = [i for i, name in enumerate(fn.arg_names) if signature[name].startswith("*")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in pointers}  # torch / TensorRT buffers are aligned
    cfg = conv_block.CONFIGS[config]
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    target = GPUTarget("cuda", cc, 32)
    compiled = triton.compile(src, target=target, options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
    md = compiled.metadata
    if md.global_scratch_size or md.profile_scratch_size:
        raise RuntimeError("kernel needs global scratch memory; the AOT plugin cannot provide it")
    ptx = compiled.asm["ptx"]
    entry = re.search(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx)
    regs, spill_st, spill_ld = _ptxas_usage(ptx, f"sm_{cc}a" if cc >= 90 else f"sm_{cc}")
    return CompileReport(
        name=variant_name(ks, dtype, config, ln_residual), cc=cc, kernel_name=entry.group(1),
        registers=regs, spill_stores=spill_st, spill_loads=spill_ld, shared_bytes=md.shared,
        shared_limit=SHARED_LIMIT.get(cc, 48 * 1024), num_warps=md.num_warps, num_stages=md.num_stages,
        block_m=cfg.kwargs["BLOCK_M"], grid_x=triton.cdiv(grid[0] * grid[1], cfg.kwargs["BLOCK_M"]),
        threads=md.num_warps * 32, num_params=entry.group(2).count(".param"),
        params=[n for n in fn.arg_names if signature[n] != "constexpr"] + ["global_scratch", "profile_scratch"],
        tensor_core_ops=_tensor_core_ops(compiled.asm["cubin"]),
        constexprs={k: v for k, v in constexprs.items() if v is not None}, ptx=ptx,
    )


def format_table(reports: list[CompileReport]) -> str:
    head = "| variant | sm | regs | spills (B) | smem (KB) / limit | warps | tensor-core SASS |"
    rows = [head, "|" + "---|" * 7]
    for r in reports:
        tc = ", ".join(f"{op} x{n}" for op, n in r.tensor_core_ops.items()) or "none"
        rows.append(f"| {r.name} | {r.cc} | {r.registers} | {r.spills} | "
                    f"{r.shared_bytes / 1024:.1f} / {r.shared_limit // 1024} | {r.num_warps} | {tc} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spvit_kernels.compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--cc", default="80,90", help="compute capabilities, comma separated")
    p.add_argument("--out", type=Path, help="write <variant>_sm<cc>/<name>.ptx + .json here")
    p.add_argument("--ks", default="1,3")
    p.add_argument("--dtypes", default="fp16,bf16,fp32")
    p.add_argument("--configs", default="all", help="CONFIGS names, or all: every config meant for the dtype")
    p.add_argument("--modes", default="attn,block", help="attn: fused_conv_attn, block: fused_conv_block")
    p.add_argument("--channels", type=int, default=768)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--grid", default="14x14")
    p.add_argument("--json", action="store_true", help="print reports as JSON lines instead of a table")
    a = p.parse_args(argv)
    gh, gw = (int(v) for v in a.grid.split("x"))
    reports = []
    for cc in (int(v) for v in a.cc.split(",")):
        for mode in a.modes.split(","):
            for ks in (int(v) for v in a.ks.split(",")):
                for dtype in a.dtypes.split(","):
                    names = conv_block.configs_for(DTYPES[dtype]) if a.configs == "all" else a.configs.split(",")
                    for config in names:
                        r = compile_variant(ks, dtype, cc, config, ln_residual=mode == "block",
                                            channels=a.channels, head_dim=a.head_dim, grid=(gh, gw))
                        if a.out is not None:
                            r.write(a.out / f"sm{cc}")
                        reports.append(r)
                        if a.json:
                            print(json.dumps({k: v for k, v in asdict(r).items() if k != "ptx"}, default=str),
                                  flush=True)
    if not a.json:
        print(format_table(reports))
    bad = [r.name for r in reports if r.spills or r.shared_bytes > r.shared_limit]
    if bad:
        print(f"spills or shared memory over the limit: {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
