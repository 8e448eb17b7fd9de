"""Dense models: names, checkpoint formats, error messages."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from spvit_deploy.errors import SpvitError
from spvit_deploy.models import create_dense, dims_for, resolve_model_name

from spvit_testing import TINY_IMG


@pytest.mark.parametrize(
    "alias, name",
    [("deit_t", "deit_tiny_patch16_224"), ("deit_small", "deit_small_patch16_224"), ("deit_b", "deit_base_patch16_224"),
     ("vit_small_patch16_224", "vit_small_patch16_224")],
)
def test_aliases(alias: str, name: str) -> None:
    assert resolve_model_name(alias) == name


def test_unknown_and_unsupported_models() -> None:
    with pytest.raises(SpvitError, match="unknown model 'deit_x'"):
        resolve_model_name("deit_x")
    with pytest.raises(SpvitError, match="it is a ResNet; use a timm VisionTransformer .* or a timm SwinTransformer"):
        dims_for("resnet18")
    with pytest.raises(SpvitError, match="exactly one class token"):
        dims_for("vit_medium_patch16_gap_256")  # no class token, average pooling


def test_any_timm_class_token_vit() -> None:
    dims = dims_for("vit_small_patch16_224", num_classes=7, img_size=96)
    b = dims.blocks[0]
    assert (dims.family, dims.embed_dim, b.heads, b.grid, b.tokens, dims.num_classes) == ("vit", 384, 6, (6, 6), 37, 7)


@pytest.mark.parametrize("fmt", ["bare.pth", "official.pth", "timm.bin", "timm.safetensors"])
def test_checkpoint_formats(tiny_dense, tmp_path, fmt: str) -> None:
    state = tiny_dense.state_dict()
    path = tmp_path / fmt
    if fmt == "official.pth":
        torch.save({"model": state, "epoch": 3}, path)
    elif fmt.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    loaded = create_dense("deit_tiny", checkpoint=path, num_classes=10, img_size=TINY_IMG)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_checkpoint_mismatch_lists_keys(tiny_dense, tmp_path) -> None:
    state = tiny_dense.state_dict()
    state.pop("blocks.3.mlp.fc1.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(SpvitError, match=r"missing 1 keys \(first: blocks.3.mlp.fc1.weight\); unexpected 1 keys"):
        create_dense("deit_tiny", checkpoint=path, num_classes=10, img_size=TINY_IMG)


def test_checkpoint_wrong_classes(tiny_dense, tmp_path) -> None:
    path = tmp_path / "ten.pth"
    torch.save(tiny_dense.state_dict(), path)
    with pytest.raises(SpvitError, match="head.weight is \\(10, 192\\), model wants \\(1000, 192\\)"):
        create_dense("deit_tiny", checkpoint=path, img_size=TINY_IMG)


def test_unreadable_checkpoint(tmp_path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SpvitError, match="cannot read checkpoint"):
        create_dense("deit_tiny", checkpoint=junk)
    with pytest.raises(SpvitError, match="does not exist"):
        create_dense("deit_tiny", checkpoint=tmp_path / "none.pth")


def test_pretrained_offline_names_checkpoint(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpvitError, match="--checkpoint"):
        create_dense("deit_tiny", pretrained=True)
