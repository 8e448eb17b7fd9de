"""One small compressed model with every op type, saved as a run folder and exported once via the CLI."""
from __future__ import annotations

import json

import pytest
import torch

from spvit_deploy.spec import ArchSpec

from export_testing import CLASSES, IMG, every_op_spec


@pytest.fixture(scope="session")
def spec() -> ArchSpec:
    return every_op_spec()


@pytest.fixture(scope="session")
def plain(spec):
    """The materialized network, with random weights, BatchNorm statistics and head mixing."""
    import copy

    from spvit_deploy.model_source import randomize_constants
    from spvit_deploy.materialization import materialize
    from spvit_deploy.models import create_dense
    from spvit_deploy.supernet import fix_gates, randomize_supernet_state, to_supernet

    torch.manual_seed(0)
    dense = randomize_constants(create_dense("deit_t", num_classes=CLASSES, img_size=IMG), seed=1)
    sn = to_supernet(copy.deepcopy(dense))
    randomize_supernet_state(sn, torch.Generator().manual_seed(2))
    return materialize(fix_gates(sn, spec).eval(), spec)


@pytest.fixture(scope="session")
def run_dir(plain, spec, tmp_path_factory):
    from spvit_deploy.run import save_run

    return save_run(plain, spec, tmp_path_factory.mktemp("export") / "run")


@pytest.fixture(scope="session")
def exported(run_dir, tmp_path_factory):
    """`spvit-deploy export --run RUN --out model.onnx --json`: (path, the printed report)."""
    import contextlib
    import io

    from spvit_deploy.cli import main

    out = tmp_path_factory.mktemp("export") / "model.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", "--run", str(run_dir), "--out", str(out), "--json"])
    assert rc == 0
    return out, json.loads(buf.getvalue())
