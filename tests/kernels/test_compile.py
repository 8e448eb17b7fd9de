"""Ahead-of-time compile of every conv-block variant for sm_80 and sm_90 (no GPU needed):
no register spills, shared memory within the target's limit, tensor-core SASS, PTX files.

The compile runs in a subprocess: this process imports the kernels under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spvit_kernels
from spvit_kernels import conv_block as cb

pytestmark = pytest.mark.kernels
CCS = (80, 90)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
VARIANTS = [
    (f"{mode}_k{ks}_{dtype}_{config}", cc)
    for cc in CCS for mode in ("conv_attn", "conv_block") for ks in (1, 3)
    for dtype in DTYPES for config in cb.configs_for(DTYPES[dtype])
]


def _compile_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    kernels_dir = str(Path(spvit_kernels.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([kernels_dir, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _compile_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spvit_kernels.compile", *args], env=_compile_env(),
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[tuple[str, int], dict], Path]:
    out = tmp_path_factory.mktemp("ptx")
    # one compile process per target, side by side: Triton's compile and ptxas are single-threaded
    procs = [subprocess.Popen([sys.executable, "-m", "spvit_kernels.compile", "--cc", str(cc), "--out", str(out),
                               "--json"], env=_compile_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cc in CCS]
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=900)
        assert "Traceback" not in stderr, stderr
        reports += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {(r["name"], r["cc"]): r for r in reports}, out


def test_every_variant_compiled(compiled) -> None:
    reports, _ = compiled
    assert sorted(reports) == sorted(VARIANTS)


@pytest.mark.parametrize("name,cc", VARIANTS, ids=[f"{n}-sm{cc}" for n, cc in VARIANTS])
def test_no_spills_smem_fits_tensor_cores(compiled, name: str, cc: int) -> None:
    r = compiled[0][(name, cc)]
    assert r["spill_stores"] == 0 and r["spill_loads"] == 0, f"{name} sm_{cc} spills: {r}"
    assert 0 < r["registers"] <= 255
    assert r["shared_bytes"] <= r["shared_limit"] == {80: 163 * 1024, 90: 227 * 1024}[cc]
    wanted = {"HMMA"} if cc == 80 else {"HGMMA", "HMMA"}
    assert wanted & set(r["tensor_core_ops"]), f"no tensor-core instructions in {name} sm_{cc}"


def test_ptx_and_launch_metadata_written(compiled) -> None:
    reports, out = compiled
    for (name, cc), r in reports.items():
        ptx = (out / f"sm{cc}" / f"{name}.ptx").read_text()
        meta = json.loads((out / f"sm{cc}" / f"{name}.json").read_text())
        assert f".entry {r['kernel_name']}(" in ptx
        assert (".target sm_90a" if cc == 90 else ".target sm_80") in ptx
        assert meta["num_params"] == len(meta["params"]) == ptx.split(".entry")[1].split(")")[0].count(".param")
        assert meta["threads"] == 32 * meta["num_warps"] and meta["block_m"] == meta["constexprs"]["BLOCK_M"]
        assert meta["grid_x"] == -(-14 * 14 // meta["block_m"])
        assert ("ln_w_ptr" in meta["params"]) == name.startswith("conv_block")


def test_cli_prints_table() -> None:
    proc = _compile_cli("--cc", "80", "--ks", "1", "--dtypes", "fp16", "--configs", "m64_k64_n64_w4_s3",
                        "--modes", "attn")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("| variant | sm | regs | spills")
    assert lines[2].startswith("| conv_attn_k1_fp16_m64_k64_n64_w4_s3 | 80 |") and "HMMA" in lines[2]


@pytest.mark.skipif(not cb.INTERPRETED, reason="only meaningful under TRITON_INTERPRET=1")
def test_compile_refuses_interpreted_kernels() -> None:
    from spvit_kernels.compile import compile_variant

    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        compile_variant(1, "fp16", 80)
