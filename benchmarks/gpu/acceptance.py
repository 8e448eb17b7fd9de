"""GPU acceptance in one command: everything this repository claims about TensorRT, the Triton kernels
and the Triton Inference Server, run on a machine with an NVIDIA GPU, written to one results folder.

    python benchmarks/gpu/acceptance.py                 # results in benchmarks/results/acceptance_<gpu>_<date>
    python benchmarks/gpu/acceptance.py --dry-run       # what it would run, anywhere (no GPU needed)

Needs an NVIDIA GPU, TensorRT >= 10.9, Triton >= 3.3 and this package with its documented extras
(`pip install -e '.[onnx,data,trt,bench,test]'`); installs nothing. Steps, each with its own time limit
so the whole fits the budget (15 minutes on one H100, by estimate: not measured yet):
kernel tests on CUDA, the kernel benchmark, the TensorRT engine tests, `run_trt.py` (engine builds with
and without plugins for DeiT-Ti/S/B, parity against ONNX Runtime, latency at batch 1/16/64 against the
fair dense baseline), and the Triton server smoke test where a Docker engine and a run folder exist.
Writes environment.json (card, driver, CUDA, TensorRT, Triton, torch), one log per step, summary.json and
summary.md. Exit 0 when every step that ran passed, 1 otherwise, 2 (one line) when the machine cannot run it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODELS = "deit_b,swin_t,deit_s,deit_t"  # DeiT-B first (the goals are judged on it), then Swin-T (its conv1x1 blocks
# go through the class-token-free plugin variant)
BATCHES = "1,16,64"
BUDGET_S = 15 * 60


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout_s: int
    why: str
    env: dict[str, str] = field(default_factory=dict)
    skip: str | None = None  # a reason not to run it here


def steps(out: Path, run_dir: str | None, docker: bool) -> list[Step]:
    py = sys.executable
    gpu_env = {"TRITON_INTERPRET": ""}  # compiled Triton kernels, not the interpreter
    serve = out / "triton_smoke"
    smoke_skip = (None if docker and run_dir else
                  "no Docker engine here" if not docker else "no --run RUN_DIR given (a trained or compressed run)")
    return [
        Step("kernel tests", [py, "-m", "pytest", "-q", "-x", "tests/kernels", "tests/engine/test_engine_trt_plugin.py"],
             150, "the Triton kernels on CUDA against their PyTorch references; AOT PTX for this GPU", gpu_env),
        Step("kernel benchmark", [py, "benchmarks/kernels/bench_conv_block.py", "--out", str(out / "kernels"),
                                  "--batches", "1,64", "--iters", "50", "--warmup", "10", "--no-compile"],
             90, "fused conv-attention kernels vs cuDNN/cuBLAS eager", gpu_env),
        Step("engine tests", [py, "-m", "pytest", "-q", "tests/engine"],
             90, "build-engine, runner and plugin stages against the stand-in TensorRT (tests/engine/engine_fakes.py); "
             "the real TensorRT is exercised by the benchmark step below", gpu_env),
        Step("tensorrt benchmark", [py, "benchmarks/gpu/run_trt.py", "--out", str(out / "trt"), "--models", MODELS,
                                    "--batches", BATCHES, "--iters", "100", "--warmup", "10"],
             480, "engines with and without plugins, parity vs ONNX Runtime, latency vs the fair dense baseline",
             gpu_env),
        Step("tritonserver smoke", [py, str(Path(__file__)), "--smoke", "--run", run_dir or "RUN_DIR",
                                    "--out", str(serve)],
             90, "export-triton, the server image (pull it beforehand: the limit does not cover a multi-GB pull), "
             "/v2/health/ready and a top-5 request with real images",
             skip=smoke_skip),
    ]


# ------------------------------------------------------------------------------ environment


def _cmd(args: list[str]) -> str | None:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except Exception:  # noqa: BLE001 - absent or broken: recorded as None
        return None


def environment() -> dict[str, Any]:
    """Card, driver, CUDA, TensorRT, Triton and torch versions (None where unknown)."""
    from spvit_deploy.engine.device import driver_info

    smi = _cmd(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"])
    cards = [dict(zip(("name", "driver", "compute_capability", "memory"), (s.strip() for s in row.split(","))))
             for row in (smi or "").splitlines() if row.strip()]
    drv = driver_info()
    torch_cuda = None
    try:
        import torch

        torch_cuda = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "gpus": cards,
            "card": cards[0]["name"] if cards else None, **drv.to_dict(), "cuda_torch": torch_cuda,
            "tensorrt": _version("tensorrt"), "triton": _version("triton"), "torch": _version("torch"),
            "python": sys.version.split()[0], "docker": _docker()}


def _docker() -> bool:
    return shutil.which("docker") is not None and _cmd(["docker", "info", "--format", "{{.ServerVersion}}"]) is not None


def check_machine() -> None:
    """One-line SpvitError unless this machine can run the acceptance (GPU, TensorRT >= 10.9, Triton >= 3.3)."""
    from spvit_deploy.engine.device import MIN_TRT_AOT, gpu_info, require_tensorrt
    from spvit_deploy.errors import SpvitError

    gpu_info()
    require_tensorrt(MIN_TRT_AOT)
    os.environ.pop("TRITON_INTERPRET", None)
    try:
        from spvit_kernels.trt_kernel import check_triton

        check_triton()
    except RuntimeError as e:
        raise SpvitError(str(e)) from None


def default_out(card: str | None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", card or "gpu").strip("_").lower()
    return ROOT / "benchmarks" / "results" / f"acceptance_{slug}_{dt.date.today().isoformat()}"


# ------------------------------------------------------------------------------ the run


def run_steps(plan: list[Step], out: Path, env_info: dict[str, Any]) -> dict[str, Any]:
    from spvit_deploy._io import write_json, write_text

    rows = []
    t_all = time.perf_counter()
    for s in plan:
        row: dict[str, Any] = {"step": s.name, "why": s.why, "cmd": " ".join(s.cmd), "timeout_s": s.timeout_s}
        if s.skip:
            rows.append({**row, "status": "skipped", "reason": s.skip})
            print(f"[acceptance] {s.name}: skipped ({s.skip})", file=sys.stderr, flush=True)
            continue
        print(f"[acceptance] {s.name} (limit {s.timeout_s}s)", file=sys.stderr, flush=True)
        env = {**os.environ, **s.env}
        env = {k: v for k, v in env.items() if not (k in s.env and v == "")}
        log = out / "logs" / f"{re.sub(r'[^a-z0-9]+', '_', s.name)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "w") as f:
            try:
                rc = subprocess.run(s.cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    timeout=s.timeout_s).returncode
                status = "passed" if rc == 0 else "failed"
            except subprocess.TimeoutExpired:
                rc, status = None, "timed out"
        rows.append({**row, "status": status, "returncode": rc, "seconds": round(time.perf_counter() - t0, 1),
                     "log": str(log.relative_to(out))})
    total = round(time.perf_counter() - t_all, 1)
    summary = {"kind": "spvit-deploy GPU acceptance", "environment": env_info, "steps": rows, "total_seconds": total,
               "budget_seconds": BUDGET_S, "within_budget": total <= BUDGET_S,
               "passed": all(r["status"] in ("passed", "skipped") for r in rows)}
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", render(summary))
    return summary


def render(summary: dict[str, Any]) -> str:
    e = summary["environment"]
    lines = ["# GPU acceptance", "",
             f"- Card: {e.get('card')}; driver {e.get('driver_version')} (CUDA {e.get('driver_cuda')}, PTX up to "
             f"{e.get('driver_max_ptx')}); CUDA (torch) {e.get('cuda_torch')}; TensorRT {e.get('tensorrt')}; "
             f"Triton {e.get('triton')}; torch {e.get('torch')}; {e.get('date_utc')}",
             f"- Total {summary['total_seconds']} s of a {summary['budget_seconds']} s budget; "
             f"{'all steps passed' if summary['passed'] else '**a step failed**'}", "",
             "| step | status | seconds | log |", "|---|---|---|---|"]
    for r in summary["steps"]:
        lines.append(f"| {r['step']} | {r['status']}{' (' + r['reason'] + ')' if r.get('reason') else ''} | "
                     f"{r.get('seconds', '')} | {r.get('log', '')} |")
    lines += ["", "TensorRT numbers: trt/report.md; kernel numbers: kernels/report.md."]
    return "\n".join(lines) + "\n"


def smoke(run_dir: str, out: Path) -> int:
    """export-triton (ONNX Runtime backend) -> server image -> ready -> a top-5 request; Docker needed."""
    repo = out / "model_repository"
    tag = "spvit-triton:acceptance"
    cmds = [[sys.executable, "-m", "spvit_deploy", "export-triton", "--run", run_dir, "--repo", str(repo), "--force"],
            ["docker", "build", "-f", "docker/Dockerfile.server", "--build-arg",
             f"MODEL_REPO={os.path.relpath(repo, ROOT)}", "-t", tag, "."]]
    for c in cmds:
        if subprocess.run(c, cwd=ROOT).returncode != 0:
            return 1
    cid = _cmd(["docker", "run", "-d", "--rm", "--gpus", "all", "-p", "8000:8000", tag])
    if not cid:
        return 1
    try:
        for _ in range(60):
            if subprocess.run(["curl", "-fsS", "localhost:8000/v2/health/ready"], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        else:
            return 1
        model = next(p.name for p in repo.iterdir() if p.is_dir())
        return subprocess.run([sys.executable, "-m", "spvit_deploy.serve.client", "--url", "localhost:8000",
                               "--model", model, "--preprocess", str(repo / model / "preprocess.json"), "--samples"],
                              cwd=ROOT).returncode
    finally:
        subprocess.run(["docker", "stop", cid], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/acceptance_<gpu>_<date>)")
    p.add_argument("--run", default=None, help="a run folder for the Triton server smoke test (skipped without one)")
    p.add_argument("--dry-run", action="store_true", help="say what would run, run nothing, write nothing")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # the smoke step itself
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "kernels"))
    from spvit_deploy.errors import SpvitError

    if args.smoke:
        return smoke(args.run, args.out)
    if args.dry_run:
        env_info = environment()
        out = args.out or default_out(env_info.get("card"))
        try:
            check_machine()
            ready = "yes"
        except SpvitError as e:
            ready = f"no: {e}"
        print(f"acceptance --dry-run: would write {out}/ (environment.json, logs/, summary.json, summary.md)")
        print(f"  this machine can run it: {ready}")
        print(f"  card {env_info['card']}, driver {env_info['driver_version']} (CUDA {env_info['driver_cuda']}), "
              f"TensorRT {env_info['tensorrt']}, Triton {env_info['triton']}, torch {env_info['torch']}")
        total = 0
        for s in steps(out, args.run, bool(env_info["docker"])):
            total += 0 if s.skip else s.timeout_s
            state = f"skip: {s.skip}" if s.skip else f"limit {s.timeout_s}s"
            print(f"  - {s.name} ({state}): {s.why}\n      {' '.join(s.cmd)}")
        print(f"  time limits add up to {total}s of the {BUDGET_S}s budget (the 15 minutes on one H100 are an "
              "estimate, not a measurement)")
        return 0
    try:
        check_machine()
    except SpvitError as e:
        print(f"acceptance: error: {e}", file=sys.stderr)
        return 2
    env_info = environment()
    out = args.out or default_out(env_info.get("card"))
    out.mkdir(parents=True, exist_ok=True)
    from spvit_deploy._io import write_json

    write_json(out / "environment.json", env_info)
    summary = run_steps(steps(out, args.run, bool(env_info["docker"])), out, env_info)
    print(json.dumps({"out": str(out), "passed": summary["passed"], "total_seconds": summary["total_seconds"]}))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
