"""import-official for SPViT-Swin: exact against the official forward written from the note
(`official_swin_ref.py`), which tells apart a wrong column order, a row-major kernel, alpha 0.01 and a
zero skip branch; one-line errors that name the first bad block."""
from __future__ import annotations

import json

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.official import import_official
from spvit_deploy.spec import ArchSpec, BlockSpec

from official_swin_ref import DEIT_TAPS, nested_codes, official_forward, random_official_checkpoint

NANO = "swin_nano_patch4_window4_64"
GEOM = dict(embed=32, depths=(2, 2, 2), heads=(1, 2, 4), window=4)
OPS = ["conv3x3", "skip", "conv1x1", "msa", "msa", "conv3x3"]  # every op; shifted and one-window blocks
WIDTHS = [40, 17, 100, 256, 0, 300]
KEPT = [tuple(range(0, 128, 3))[:40], tuple(range(17)), tuple(range(100)), tuple(range(256)), (), tuple(range(300))]


@pytest.fixture(scope="module")
def ckpt() -> dict[str, torch.Tensor]:
    return random_official_checkpoint(OPS, WIDTHS, img=64, classes=10, **GEOM)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _spec() -> ArchSpec:
    return ArchSpec(model=NANO, img_size=64, num_classes=10, family="swin",
                    blocks=tuple(BlockSpec(op, k) for op, k in zip(OPS, KEPT)))


@pytest.fixture(scope="module")
def imported(ckpt):
    return import_official(dict(ckpt), NANO, arch=_spec())


def test_import_is_exact_against_the_official_forward(imported, ckpt, x) -> None:
    plain, spec = imported
    assert spec.skip_branch == "input" and spec.conv_scope == "full_map" and spec.ops == OPS
    with torch.no_grad():
        ours = plain(x)
    ref = official_forward(ckpt, OPS, x, **{k: GEOM[k] for k in ("depths", "heads", "window")})
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("wrong, min_gap", [
    (dict(taps=DEIT_TAPS), 1e-3),  # the DeiT column order
    (dict(row_major=True), 1e-3),  # the kernel read row-major
    (dict(alpha=0.01), 1e-3),  # DeiT's temperature
    (dict(skip_zero=True), 1e-3),  # a skip block without x + LN1(x)
])
def test_the_reference_tells_the_wrong_readings_apart(imported, ckpt, x, wrong, min_gap) -> None:
    plain, _ = imported
    with torch.no_grad():
        ours = plain(x)
    ref = official_forward(ckpt, OPS, x, **{k: GEOM[k] for k in ("depths", "heads", "window")}, **wrong)
    assert (ours - ref).abs().max() > min_gap


def test_nested_indicators_and_placeholder_widths(ckpt, x) -> None:
    codes = json.dumps(nested_codes(OPS, GEOM["depths"]))
    plain, spec = import_official(dict(ckpt), NANO, indicators=codes)
    assert spec.ops == OPS and [b.ffn_width for b in spec.blocks] == WIDTHS and "ffn_kept" in spec.extra
    ref = official_forward(ckpt, OPS, x, **{k: GEOM[k] for k in ("depths", "heads", "window")})
    with torch.no_grad():
        assert (plain(x) - ref).abs().max() <= 1e-5


def test_bad_checkpoints_name_the_first_bad_block(ckpt) -> None:
    wrong_op = ["conv3x3", "skip", "conv1x1", "conv1x1", "msa", "conv3x3"]
    spec = ArchSpec(model=NANO, img_size=64, num_classes=10, family="swin",
                    blocks=tuple(BlockSpec(op, k) for op, k in zip(wrong_op, KEPT)))
    with pytest.raises(SpvitError, match=r"block 3 \(layers.1.blocks.1\): the architecture says conv1x1 but the "
                                         r"checkpoint's block is msa"):
        import_official(dict(ckpt), NANO, arch=spec)
    bad = dict(ckpt)
    del bad["layers.2.blocks.0.attn.proj.bias"]
    with pytest.raises(SpvitError, match=r"block 4 \(layers.2.blocks.0, msa\): the checkpoint lacks "
                                         r"layers.2.blocks.0.attn.proj.bias"):
        import_official(bad, NANO, arch=_spec())
    bad = dict(ckpt)
    bad["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(41, 32)
    with pytest.raises(SpvitError, match=r"block 0 \(layers.0.blocks.0, conv3x3\): .*mlp.fc1.weight is \(41, 32\)"):
        import_official(bad, NANO, arch=_spec())
    with pytest.raises(SpvitError, match="post_training_optimize_checkpoint"):
        import_official({**ckpt, "layers.0.blocks.0.attn.bconv.0.weight": torch.zeros(1)}, NANO, arch=_spec())


def test_search_file_gives_the_kept_units(ckpt, tmp_path, x) -> None:
    from spvit_deploy.models import dims_for

    paths = [f"layers.{i}.blocks.{j}" for i in range(3) for j in range(2)]
    search = {}
    for path, kept, geom in zip(paths, KEPT, dims_for(NANO).blocks):
        t = torch.zeros(geom.dense_width)
        t[list(kept)] = 1.0
        search[f"{path}.mlp.assigned_indicator_index"] = t
    torch.save({"model": search, "amp": None}, tmp_path / "search.pth")
    codes = json.dumps(nested_codes(OPS, GEOM["depths"]))
    plain, spec = import_official(dict(ckpt), NANO, indicators=codes, search=str(tmp_path / "search.pth"))
    assert [b.ffn_kept for b in spec.blocks] == KEPT and "ffn_kept" not in spec.extra
    ref = official_forward(ckpt, OPS, x, **{k: GEOM[k] for k in ("depths", "heads", "window")})
    with torch.no_grad():
        assert (plain(x) - ref).abs().max() <= 1e-5
    search.pop("layers.1.blocks.0.mlp.assigned_indicator_index")
    torch.save({"model": search}, tmp_path / "short.pth")
    with pytest.raises(SpvitError, match=r"block 2 \(layers.1.blocks.0\): .* has no layers.1.blocks.0.mlp"):
        import_official(dict(ckpt), NANO, indicators=codes, search=str(tmp_path / "short.pth"))


@pytest.mark.slow
def test_swin_t_paper_arch_imports_exactly() -> None:
    """Swin-T's published architecture at full size (conv1x1 and skip blocks in stages 0-1, 224 px, 1000
    classes): the imported plain network matches the official forward written from the note to 1e-5."""
    from spvit_deploy.spec import load_spec

    spec = load_spec("paper:swin_tiny")
    geom = dict(embed=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7)
    ckpt = random_official_checkpoint(spec.ops, [b.ffn_width for b in spec.blocks], img=224, classes=1000, **geom)
    plain, got = import_official(dict(ckpt), "swin_t", arch="paper:swin_tiny")
    assert got.ops == spec.ops and got.skip_branch == "input"
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = plain(x)
    ref = official_forward(ckpt, spec.ops, x, **{k: geom[k] for k in ("depths", "heads", "window")})
    assert (ours - ref).abs().max() <= 1e-5
