"""Benchmark the fused conv-block kernels against PyTorch eager (cuDNN conv + ReLU + GEMM,
i.e. the reference) and torch.compile of the reference, on DeiT-Ti/S/B shapes (CUDA only).

    python benchmarks/kernels/bench_conv_block.py --out benchmarks/results/kernels_<gpu>

Writes results.json (one row per shape x method, with the environment), report.md and,
when matplotlib is present, latency.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

MODELS = {"deit_ti": 192, "deit_s": 384, "deit_b": 768}  # embed dim C; head dim d = 64


@dataclass(frozen=True)
class Peak:
    """Dense fp16/bf16 tensor-core TFLOP/s (fp32 accumulate) and HBM GB/s from the data sheets."""

    tflops: float
    gbps: float


# Matched in order against torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3".
PEAKS: list[tuple[str, Peak]] = [
    (r"H100.*PCIe", Peak(756.0, 2000.0)),
    (r"H100 NVL", Peak(835.0, 3900.0)),
    (r"H100", Peak(989.4, 3350.0)),  # SXM5
    (r"H200", Peak(989.4, 4800.0)),
    (r"A100.*PCIE.*40GB|A100-PCIE-40GB", Peak(312.0, 1555.0)),
    (r"A100.*80GB.*PCIe|A100-PCIE-80GB", Peak(312.0, 1935.0)),
    (r"A100-SXM4-40GB", Peak(312.0, 1555.0)),
    (r"A100", Peak(312.0, 2039.0)),  # SXM4 80GB
]


def peak_for(device_name: str) -> Peak | None:
    for pattern, peak in PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    return None


@dataclass(frozen=True)
class Shape:
    model: str
    batch: int
    channels: int
    head_dim: int
    ks: int
    grid: tuple[int, int]

    @property
    def tokens(self) -> int:
        return 1 + self.grid[0] * self.grid[1]


def cost(shape: Shape, elem_bytes: int) -> tuple[float, float]:
    """(FLOPs, bytes) the fused op must do at least: dense kxk conv + projection GEMMs
    (borders counted as cuDNN computes them), and one read of x + write of the output + weights."""
    n = shape.grid[0] * shape.grid[1]
    c, d, k = shape.channels, shape.head_dim, shape.ks
    flops = 2.0 * shape.batch * n * (c * d * k * k + d * c)
    weights = c * d * k * k + d + d * c + c + 2 * c  # conv, proj, LayerNorm
    return flops, float(elem_bytes * (2 * shape.batch * shape.tokens * c + weights))


def summarize(shape: Shape, method: str, times_ms: list[float], elem_bytes: int, peak: Peak | None,
              max_abs_err: float | None = None) -> dict:
    """One results row: median latency and the fraction of the roofline floor it reaches."""
    flops, nbytes = cost(shape, elem_bytes)
    median_s = statistics.median(times_ms) * 1e-3
    row = {**asdict(shape), "method": method, "median_us": median_s * 1e6, "samples": len(times_ms),
           "flops": flops, "bytes": nbytes, "tflops": flops / median_s * 1e-12, "gbps": nbytes / median_s * 1e-9,
           "max_abs_err": max_abs_err, "floor_fraction": None}
    if peak is not None:
        floor_s = max(flops / (peak.tflops * 1e12), nbytes / (peak.gbps * 1e9))
        row["floor_fraction"] = floor_s / median_s
    return row


def write_report(out_dir: Path, environment: dict, rows: list[dict]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")
    lines = [f"# Conv-block kernel benchmark: {environment.get('gpu', '?')}", "",
             ", ".join(f"{k} {v}" for k, v in environment.items()), "",
             "| model | k | batch | method | median (us) | vs eager | TFLOP/s | GB/s | % of floor | max abs err |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    eager = {(r["model"], r["ks"], r["batch"]): r["median_us"] for r in rows if r["method"] == "eager"}
    for r in rows:
        base = eager.get((r["model"], r["ks"], r["batch"]))
        speedup = f"{base / r['median_us']:.2f}x" if base else "-"
        frac = f"{100 * r['floor_fraction']:.1f}" if r["floor_fraction"] is not None else "-"
        err = f"{r['max_abs_err']:.2e}" if r["max_abs_err"] is not None else "-"
        lines.append(f"| {r['model']} | {r['ks']} | {r['batch']} | {r['method']} | {r['median_us']:.1f} | {speedup} "
                     f"| {r['tflops']:.1f} | {r['gbps']:.0f} | {frac} | {err} |")
    lines += ["", "Floor = max(FLOPs / peak tensor-core FLOP/s, bytes / peak HBM bandwidth); bytes = one read of x, "
              "one write of the output and the weights. Latencies: CUDA events, median, L2 not flushed."]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    _plot(out_dir / "latency.png", rows)


def _plot(path: Path, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    methods = sorted({r["method"] for r in rows})
    cases = sorted({(r["model"], r["ks"], r["batch"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, len(cases)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        lat = {(r["model"], r["ks"], r["batch"]): r["median_us"] for r in rows if r["method"] == m}
        ax.bar([j + i * width for j in range(len(cases))], [lat.get(c, 0) for c in cases], width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))], [f"{m}\nk{k} b{b}" for m, k, b in cases],
                  fontsize=7)
    ax.set_ylabel("median latency (us)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def time_cuda(fn: Callable[[], object], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def environment() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    driver = "?"
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return {"gpu": torch.cuda.get_device_name(0), "sm": f"{props.major}{props.minor}",
            "sms": props.multi_processor_count,
            "driver": driver, "cuda": torch.version.cuda, "torch": torch.__version__, "triton": triton.__version__,
            "python": platform.python_version(), "host": platform.node()}


def _import_kernels():
    try:
        import spvit_kernels
    except ImportError:  # running from a checkout without `pip install -e .`
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "kernels"))
        import spvit_kernels
    from spvit_kernels import conv_block

    return spvit_kernels, conv_block


def run(args: argparse.Namespace) -> list[dict]:
    sk, cb = _import_kernels()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    peak = peak_for(torch.cuda.get_device_name(0))
    compiled_ref = None if args.no_compile else torch.compile(sk.conv_block_reference, dynamic=False)
    rows = []
    for model in args.models.split(","):
        for ks in (int(k) for k in args.ks.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                shape = Shape(model, batch, MODELS[model], 64, ks, (14, 14))
                rows += _bench_shape(shape, dtype, cb, sk, compiled_ref, peak, args)
                print(f"{model} k{ks} b{batch}: " + ", ".join(
                    f"{r['method']} {r['median_us']:.1f}us" for r in rows if r["batch"] == batch
                    and r["model"] == model and r["ks"] == ks), flush=True)
    return rows


def _bench_shape(shape: Shape, dtype, cb, sk, compiled_ref, peak: Peak | None, args) -> list[dict]:
    g = torch.Generator(device="cuda").manual_seed(0)
    c, d, k = shape.channels, shape.head_dim, shape.ks
    rand = lambda *s, scale=1.0: (scale * torch.randn(*s, device="cuda", generator=g)).to(dtype)  # noqa: E731
    x = rand(shape.batch, shape.tokens, c)
    lw, lb = 1 + rand(c, scale=0.1), rand(c, scale=0.1)
    cw, cbias = rand(d, c, k, k, scale=(c * k * k) ** -0.5), rand(d, scale=0.1)
    pw, pb = rand(c, d, scale=d**-0.5), rand(c, scale=0.1)
    packed = cb.pack_conv_weight(cw)
    eps, grid = 1e-6, shape.grid
    want = sk.conv_block_reference(*(t.float() for t in (x, lw, lb)), eps, *(t.float() for t in (cw, cbias, pw, pb)),
                                   grid)
    methods: dict[str, Callable[[], torch.Tensor]] = {
        "eager": lambda: sk.conv_block_reference(x, lw, lb, eps, cw, cbias, pw, pb, grid),
        "fused_block": lambda: cb.fused_conv_block(x, lw, lb, eps, packed, cbias, pw, pb, grid),
        "torch_ln+fused_attn": lambda: x + cb.fused_conv_attn(
            torch.nn.functional.layer_norm(x, (c,), lw, lb, eps), packed, cbias, pw, pb, grid),
    }
    if compiled_ref is not None:
        methods["torch.compile"] = lambda: compiled_ref(x, lw, lb, eps, cw, cbias, pw, pb, grid)
    rows = []
    for name, fn in methods.items():
        try:
            err = (fn().float() - want).abs().max().item()
            times = time_cuda(fn, args.warmup, args.iters)
        except Exception as exc:  # a failing baseline (e.g. no inductor toolchain) is reported, not fatal
            print(f"{name} failed on {shape}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        rows.append(summarize(shape, name, times, x.element_size(), peak, err))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/results/kernels_<gpu>)")
    p.add_argument("--models", default="deit_b,deit_s,deit_ti")
    p.add_argument("--ks", default="3,1")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16"])
    p.add_argument("--warmup", type=int, default=25)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_conv_block: needs an NVIDIA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    env = environment()
    slug = re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-")
    out = args.out or Path("benchmarks/results") / f"kernels_{slug}"
    rows = run(args)
    write_report(out, {**env, "dtype": args.dtype, "warmup": args.warmup, "iters": args.iters}, rows)
    print(f"wrote {out}/results.json and report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
