"""The `SpvitConvAttn` TensorRT plugin through `tensorrt.plugin` (quickly deployable plugins).

`register_plugin()` defines, once per process and before the ONNX parser meets the node:
- `@trtp.register`: output = input 0's shape and dtype: (B, 1+N, C) tokens with a class token, or a
  (B, gh, gw, C) map without one (Swin); the kernel variant follows the rank;
- `@trtp.autotune`: all six I/O fp16 or all fp32, LINEAR, one tactic per kernel config;
- `@trtp.aot_impl` (TensorRT >= 10.9): PTX of `spvit_kernels.trt_kernel` for this GPU, compiled
  now, launched by TensorRT as (u, cw, cb, pw, pb, batch, out); the engine needs no Python;
- `@trtp.impl` (JIT fallback, TensorRT 10.6-10.8 or on request): `spvit_kernels.fused_conv_attn`
  on torch views of TensorRT's buffers; such engines run only in Python with this module imported.

No `from __future__ import annotations` here: `tensorrt.plugin` inspects real annotation classes.
"""
import functools
from dataclasses import dataclass
from typing import Any, List, Tuple, Union

from ..passes.plugins import PLUGIN_NAME

NUM_INPUTS = 5
# AOT settings the builder fills in before parsing (the target GPU, an optional PTX ISA cap)
_TARGET: dict = {"cc": None, "ptx_version": None}
_DEFINED: dict = {}
_PTX_SEEN: set = set()  # `.version` of every kernel an aot_impl handed TensorRT since the last read


def compiled_ptx_versions() -> List[str]:
    """PTX ISA versions of the kernels handed to TensorRT since the last call (then forgotten)."""
    seen = sorted(_PTX_SEEN)
    _PTX_SEEN.clear()
    return seen


@dataclass(frozen=True)
class PluginDefs:
    """What `register_plugin` defined in this process."""

    name: str
    aot: bool
    jit: bool


def set_aot_target(cc: Union[int, None], ptx_version: Union[int, None] = None) -> None:
    """The compute capability (e.g. 90) and PTX ISA cap the AOT implementation compiles for."""
    _TARGET["cc"], _TARGET["ptx_version"] = cc, ptx_version


def tactic_config(dtype: str, tactic: int) -> str:
    """Kernel config for an autotune tactic (1-based; 0, TensorRT's default, is the first config)."""
    from spvit_kernels.trt_kernel import trt_configs

    configs = trt_configs(dtype)
    if not 0 <= tactic <= len(configs):
        raise ValueError(f"tactic {tactic} out of range for {dtype} (1..{len(configs)})")
    return configs[max(tactic, 1) - 1]


@functools.lru_cache(maxsize=None)
def compile_kernel(ks: int, dtype: str, cc: int, config: str, channels: int, head_dim: int, grid: Tuple[int, int],
                   ptx_version: Union[int, None], prefix: int = 1) -> Any:
    """`spvit_kernels.trt_kernel.compile_trt_kernel`, once per variant per process."""
    from spvit_kernels.trt_kernel import compile_trt_kernel

    return compile_trt_kernel(ks, dtype, cc, config, channels=channels, head_dim=head_dim, grid=grid,
                              ptx_version=ptx_version, prefix=prefix)


def prefix_of(u: Any) -> int:
    """Tokens before the grid from the input's rank: (B, 1+N, C) tokens of a class-token ViT -> 1,
    a (B, gh, gw, C) map (Swin) -> 0."""
    rank = len(tuple(u.shape_expr))
    if rank not in (3, 4):
        raise ValueError(f"{PLUGIN_NAME} takes (B, 1+N, C) tokens or a (B, gh, gw, C) map, not rank {rank}")
    return 1 if rank == 3 else 0


def _dtype_name(trt: Any, dtype: Any) -> str:
    if dtype == trt.float16:
        return "fp16"
    if dtype == trt.float32:
        return "fp32"
    raise ValueError(f"{PLUGIN_NAME} supports fp16 and fp32 tokens, not {dtype}")


def define(trt: Any, trtp: Any, aot: bool = True, jit: bool = True) -> PluginDefs:
    """Apply the plugin decorators of `trtp` (tensorrt.plugin, or a stand-in in tests)."""
    aot = aot and hasattr(trtp, "aot_impl")

    @trtp.register(PLUGIN_NAME)
    def conv_attn_desc(u: trtp.TensorDesc, conv_weight: trtp.TensorDesc, conv_bias: trtp.TensorDesc,
                       proj_weight: trtp.TensorDesc, proj_bias: trtp.TensorDesc,
                       kernel_size: int, grid_h: int, grid_w: int) -> trtp.TensorDesc:
        return u.like()

    @trtp.autotune(PLUGIN_NAME)
    def conv_attn_autotune(u: trtp.TensorDesc, conv_weight: trtp.TensorDesc, conv_bias: trtp.TensorDesc,
                           proj_weight: trtp.TensorDesc, proj_bias: trtp.TensorDesc,
                           outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        from spvit_kernels.trt_kernel import trt_configs

        combos = []
        for dtype, name in (("fp16", "FP16"), ("fp32", "FP32")):
            tactics = list(range(1, len(trt_configs(dtype)) + 1))
            combos.append(trtp.AutoTuneCombination(", ".join([name] * (NUM_INPUTS + 1)), "LINEAR", tactics))
        return combos

    if aot:
        @trtp.aot_impl(PLUGIN_NAME)
        def conv_attn_aot_impl(
            u: trtp.TensorDesc, conv_weight: trtp.TensorDesc, conv_bias: trtp.TensorDesc,
            proj_weight: trtp.TensorDesc, proj_bias: trtp.TensorDesc,
            kernel_size: int, grid_h: int, grid_w: int,
            outputs: Tuple[trtp.TensorDesc], tactic: int,
        ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
            if _TARGET["cc"] is None:
                raise RuntimeError("set_aot_target(cc) was not called before the build")
            dtype = _dtype_name(trt, u.dtype)
            k, _, channels, head_dim = (int(v) for v in conv_weight.shape)  # packed (k, k, C, d), static
            if k != kernel_size:
                raise ValueError(f"packed conv weight is {k}x{k}, the node says kernel_size={kernel_size}")
            kern = compile_kernel(kernel_size, dtype, int(_TARGET["cc"]), tactic_config(dtype, tactic), channels,
                                  head_dim, (grid_h, grid_w), _TARGET["ptx_version"], prefix_of(u))
            _PTX_SEEN.add(kern.ptx_version)
            launch = trtp.KernelLaunchParams()  # plain ints only: SymInt32 mishandles numpy integers
            launch.grid_x = int(kern.grid_x)
            launch.grid_y = u.shape_expr[0]  # one program row per image
            launch.block_x = int(kern.threads)
            launch.shared_mem = int(kern.shared_bytes)
            extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(u.shape_expr[0])])  # the kernel's int32 B
            return kern.kernel_name, kern.ptx, launch, extra

    if jit:
        @trtp.impl(PLUGIN_NAME)
        def conv_attn_impl(u: trtp.Tensor, conv_weight: trtp.Tensor, conv_bias: trtp.Tensor,
                           proj_weight: trtp.Tensor, proj_bias: trtp.Tensor,
                           kernel_size: int, grid_h: int, grid_w: int,
                           outputs: Tuple[trtp.Tensor], stream: int, tactic: int) -> None:
            import spvit_kernels
            import torch

            dtype = _dtype_name(trt, u.dtype)
            with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
                x = torch.as_tensor(u, device="cuda")
                cw = torch.as_tensor(conv_weight, device="cuda").permute(3, 2, 0, 1)  # (k,k,C,d) -> packed (d,C,k,k)
                tensors = [torch.as_tensor(t, device="cuda") for t in (conv_bias, proj_weight, proj_bias)]
                out = torch.as_tensor(outputs[0], device="cuda")
                spvit_kernels.fused_conv_attn(x, cw, *tensors, (grid_h, grid_w), out=out,
                                              config=tactic_config(dtype, tactic))

    return PluginDefs(PLUGIN_NAME, aot=aot, jit=jit)


def register_plugin(trt: Any = None, trtp: Any = None, aot: bool = True, jit: bool = True) -> PluginDefs:
    """Register the plugin with TensorRT's registry (once per process; later calls return the first result)."""
    if trt is None:
        from ..errors import require

        trt = require("tensorrt", "trt", "TensorRT")
        trtp = require("tensorrt.plugin", "trt", "tensorrt.plugin (TensorRT >= 10.6)")
    key = id(trtp)
    if key not in _DEFINED:
        _DEFINED[key] = define(trt, trtp, aot=aot, jit=jit)
    return _DEFINED[key]

