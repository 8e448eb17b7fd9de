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
