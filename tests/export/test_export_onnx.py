"""export: parity with PyTorch, dynamic batch, metadata round trip, checker, graph hygiene."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from spvit_deploy.export.onnx import INPUT_NAME, OUTPUT_NAME
from spvit_deploy.onnx_io import read_metadata
from spvit_deploy.export.ort import ort_session
from spvit_deploy.spec import ArchSpec

from export_testing import CLASSES, IMG


def test_cli_report(exported):
    path, rep = exported
    assert rep["path"] == str(path) and path.is_file()
    assert rep["variant"] == "compressed" and rep["opset"] == 18
    assert set(rep["parity"]) == {"1", "3"}
    assert rep["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_dynamic_batch_matches_pytorch(exported, plain, batch):
    path, _ = exported
    sess = ort_session(path, threads=1)
    x = torch.randn(batch, 3, IMG, IMG, generator=torch.Generator().manual_seed(batch))
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        ref = plain(x).numpy()
    assert got.shape == (batch, CLASSES)
    assert np.abs(got - ref).max() <= 1e-4


def test_graph_signature_and_checker(exported):
    path, _ = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    (inp,), (out,) = m.graph.input, m.graph.output
    assert inp.name == INPUT_NAME and out.name == OUTPUT_NAME
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, IMG, IMG]
    assert out.type.tensor_type.shape.dim[0].dim_param == dims[0].dim_param
    ops = {n.op_type for n in m.graph.node}
    assert {"Conv", "LayerNormalization", "Softmax", "Pad"} <= ops  # conv3x3 blocks, MSA, skip blocks
    assert not ({"Identity", "Dropout"} & ops)


def test_metadata_round_trip(exported, spec, run_dir):
    path, _ = exported
    meta = read_metadata(path)
    assert ArchSpec.from_dict(meta["spec"]) == spec
    assert meta["input_size"] == [3, IMG, IMG] and meta["num_classes"] == CLASSES
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["variant"] == "compressed" and meta["pad_widths"] is None
    import json

    run_meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["mean"] == run_meta["data_config"]["mean"] and meta["gmacs"] == run_meta["gmacs"]


def test_dense_export_has_dense_spec(tmp_path, spec):
    """--dense exports the dense model of the same name; its spec is all MSA with full FFNs."""
    from spvit_deploy.export.onnx import export_onnx
    from spvit_deploy.export.source import load_export_model

    em = load_export_model(model="deit_t", arch=spec, dense=True)
    rep = export_onnx(em.module, tmp_path / "dense.onnx", spec=em.spec, variant=em.variant, check_batches=(2,))
    meta = read_metadata(tmp_path / "dense.onnx")
    assert rep.max_abs_diff <= 1e-4 and meta["variant"] == "dense"
    assert {b["attn"] for b in meta["spec"]["blocks"]} == {"msa"}
    assert [b["ffn_width"] for b in meta["spec"]["blocks"]] == [768] * 12
