"""Graphs shared by the engine tests: a DeiT-Ti plain network at 64 px (4x4 patch grid) with every op
type (conv3x3, conv1x1, skip, MSA; random weights), exported once by the project's exporter, and its
fp16 / plugin / fp16+plugin versions as `build-engine` would receive them."""
from __future__ import annotations

from pathlib import Path

import pytest

# Import the kernels now, while the root conftest's TRITON_INTERPRET=1 is set: some engine tests
# unset it (build-engine refuses it), and the first import decides interpreter vs compiled for the
# whole test session.
import spvit_kernels.conv_block  # noqa: F401,E402

from spvit_testing import TINY, TINY_IMG, random_spec


@pytest.fixture(scope="session")
def tiny_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import onnx

    from spvit_deploy.passes.prepare import transform_graph
    from spvit_deploy.export import export_onnx, load_export_model

    spec = random_spec(TINY, 12, 768, ["conv3x3", "conv1x1", "skip", "msa"], TINY_IMG, num_classes=10,
                       empty_ffn_block=5)
    em = load_export_model(model="deit_t", arch=spec)
    out = tmp_path_factory.mktemp("graphs")
    paths = {"fp32": out / "fp32.onnx"}
    export_onnx(em.module, paths["fp32"], spec=em.spec, check_batches=(1,))
    fp32 = onnx.load(str(paths["fp32"]))
    for name, kw in {"plugins": {"plugins": True}, "fp16": {"fp16": True},
                     "fp16_plugins": {"fp16": True, "plugins": True}}.items():
        paths[name] = out / f"{name}.onnx"
        onnx.save(transform_graph(fp32, **kw)[0], str(paths[name]))
    return paths


@pytest.fixture(scope="session")
def swin_graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Swin (no class token; 16x16 / 8x8 / 4x4 maps) with conv3x3 blocks in a shifted stage-0
    block and in the one-window last stage, a conv1x1, a skip (x + LN1(x)) and MSA: fp32 and plugin graphs."""
    import onnx

    from spvit_deploy.export import export_onnx, load_export_model
    from spvit_deploy.models import dims_for
    from spvit_deploy.passes.prepare import transform_graph
    from spvit_deploy.spec import ArchSpec, BlockSpec

    name = "swin_nano_patch4_window4_64"
    ops = ["conv3x3", "skip", "conv1x1", "msa", "skip", "conv3x3"]
    blocks = tuple(BlockSpec(op, tuple(range(0, g.dense_width, 2))) for op, g in zip(ops, dims_for(name).blocks))
    spec = ArchSpec(model=name, img_size=64, num_classes=10, blocks=blocks, family="swin", skip_branch="input",
                    conv_scope="full_map")
    em = load_export_model(model=name, arch=spec)
    out = tmp_path_factory.mktemp("swin_graphs")
    paths = {"fp32": out / "fp32.onnx", "fp16_plugins": out / "fp16_plugins.onnx"}
    export_onnx(em.module, paths["fp32"], spec=em.spec, check_batches=(1,))
    fp32 = onnx.load(str(paths["fp32"]))
    onnx.save(transform_graph(fp32, fp16=True, plugins=True)[0], str(paths["fp16_plugins"]))
    paths["plugins"] = out / "plugins.onnx"
    onnx.save(transform_graph(fp32, plugins=True)[0], str(paths["plugins"]))
    return paths
