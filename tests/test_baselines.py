"""The quality study's baselines (spvit_deploy.train.baselines): each lands under its MACs budget,
counted the way the package counts (attention matmuls included); the smaller dense ViT is the
teacher's first blocks; Torch-Pruning halves the heads and trims FFN units; fine-tuning resumes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spvit_deploy.macs import cost
from spvit_deploy.models import create_dense, vit_dims
from spvit_deploy.spec import ArchSpec, BlockSpec
from spvit_deploy.train import baselines as B

NANO, IMG = "vit_nano_patch4_32", 28


@pytest.fixture(scope="module")
def dense() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_dense(NANO, num_classes=10, img_size=IMG).eval()
    with torch.no_grad():  # spread the FFN unit scores so ranking them means something
        for b in m.blocks:
            b.mlp.fc1.weight.mul_(torch.rand(b.mlp.fc1.out_features, 1) * 2)
    return m


def test_module_macs_counts_as_the_package_does(dense) -> None:
    from spvit_deploy.plain import build_plain

    assert B.module_macs(dense, IMG) == cost(vit_dims(dense)).macs
    for ops in (("msa", "conv3x3", "skip", "skip", "msa", "conv3x3"), ("conv1x1",) * 6):
        spec = ArchSpec(model=NANO, img_size=IMG, num_classes=10, blocks=tuple(
            BlockSpec(attn=op, ffn_kept=tuple(range(0, 256, 3 + i))) for i, op in enumerate(ops)))
        got, want = B.module_macs(build_plain(spec), IMG), cost(vit_dims(dense), spec).macs
        # conv1x1 blocks: the plain network runs 1,024 MACs per block more than macs.cost counts (0.02% here)
        assert got == want if "conv1x1" not in ops else 0 <= got - want <= 6 * 1024


def test_uniform_ffn_is_the_widest_width_within_budget(dense) -> None:
    dims, full = vit_dims(dense), cost(vit_dims(dense)).macs
    spec = B.uniform_ffn_spec(dense, NANO, IMG, 10, int(0.5 * full))
    w = spec.blocks[0].ffn_width
    assert {b.attn for b in spec.blocks} == {"msa"} and {b.ffn_width for b in spec.blocks} == {w}
    assert cost(dims, spec).macs <= 0.5 * full < cost(dims, spec).macs + dims.depth * 2 * 50 * 64
    blk = dense.blocks[2]
    score = blk.mlp.fc1.weight.norm(dim=1) * blk.mlp.fc2.weight.norm(dim=0)
    assert set(spec.blocks[2].ffn_kept) == set(torch.topk(score, w).indices.tolist())
    with pytest.raises(ValueError, match="every attention alone costs 41.5%"):
        B.uniform_ffn_spec(dense, NANO, IMG, 10, int(0.35 * full))


def test_depth_cut_is_the_teachers_first_blocks(dense) -> None:
    two = B.module_macs(dense, IMG) - 4 * (B.module_macs(dense, IMG) - B.module_macs(_first(dense, 5), IMG))
    small = B.depth_cut(dense, two)  # exactly two whole blocks fit
    assert len(small.blocks) == 2 and B.module_macs(small, IMG) == two
    x = torch.randn(3, 3, IMG, IMG)
    with torch.no_grad():
        assert torch.allclose(small(x), _first(dense, 2)(x), atol=1e-6)
        assert dense.blocks[0].mlp.fc1.weight.data_ptr() != small.blocks[0].mlp.fc1.weight.data_ptr()  # a copy
    half = int(0.5 * B.module_macs(dense, IMG))
    cut = B.depth_cut(dense, half)
    widths = [b.mlp.fc1.out_features for b in cut.blocks]
    assert len(cut.blocks) == 3 and widths[:2] == [256, 256] and 200 < widths[2] < 256
    assert 0.99 * half < B.module_macs(cut, IMG) <= half


def _first(model: torch.nn.Module, k: int) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model)
    m.blocks = m.blocks[:k]
    return m


def test_torch_pruning_halves_heads_and_trims_ffn_to_the_budget(dense) -> None:
    pytest.importorskip("torch_pruning", reason="torch-pruning is not installed (pip install 'spvit-deploy[study]')")
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 3, IMG, IMG, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(2)]
    budget = int(0.5 * B.module_macs(dense, IMG))
    model, ratio = B.torch_pruning_vit(dense, budget, batches, steps=5)
    assert 0.97 * budget < B.module_macs(model, IMG) <= budget and 0 < ratio < 1
    assert [b.attn.num_heads for b in model.blocks] == [2] * 6 and model.embed_dim == 64
    assert all(b.attn.qkv.out_features == 96 and b.mlp.fc2.out_features == 64 for b in model.blocks)
    assert len({b.mlp.fc1.out_features for b in model.blocks}) == 1 and model.blocks[0].mlp.fc1.out_features < 256
    assert model(torch.randn(2, 3, IMG, IMG)).shape == (2, 10)
    assert dense.blocks[0].attn.num_heads == 4  # the teacher is untouched


def test_finetune_module_trains_and_resumes(dense, tmp_path, monkeypatch) -> None:
    from safetensors.torch import save_file

    from spvit_deploy.train import fashion
    from spvit_deploy.train.config import DataConfig, config_for

    monkeypatch.setenv("SPVIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    imgs = lambda n: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10)  # noqa: E731
    fashion.write_idx_folder(tmp_path / "fm", imgs(40), imgs(20))
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(tmp_path / "teacher.safetensors"))
    cfg = config_for(NANO, DataConfig(root=f"fashion-mnist:{tmp_path / 'fm'}", batch_size=20), img_size=IMG,
                     checkpoint=str(tmp_path / "teacher.safetensors"), amp="none", distill="soft", finetune_epochs=1,
                     finetune_lr=1e-3)
    student = B.depth_cut(dense, int(0.5 * B.module_macs(dense, IMG)))
    before = student.blocks[0].mlp.fc1.weight.clone()
    res = B.finetune_module(cfg, student, tmp_path / "run", threads=1)
    assert 0 <= res["top1"] <= 100 and not torch.equal(before, student.blocks[0].mlp.fc1.weight)
    again = B.depth_cut(dense, int(0.5 * B.module_macs(dense, IMG)))  # a restart rebuilds it and loads the weights
    assert B.finetune_module(cfg, again, tmp_path / "run", threads=1) == res
    assert torch.equal(again.blocks[0].mlp.fc1.weight, student.blocks[0].mlp.fc1.weight)
