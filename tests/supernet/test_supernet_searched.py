"""A searched supernet on disk: `search_state.json` rebuilds it by itself; a fine-tune checks that the search
fits its model; searches from before the state existed still load, or are refused in one line."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from spvit_deploy.errors import SpvitError
from spvit_deploy.models import create_dense
from spvit_deploy.supernet import derive_spec, randomize_supernet_state, to_supernet
from spvit_deploy.supernet.searched import STATE_FILE, load_search, save_search, searched_supernet

from spvit_testing import TINY, TINY_IMG

SWIN = "swin_nano_patch4_window4_64"


@pytest.mark.parametrize("name, img", [(TINY, TINY_IMG), (SWIN, 64)])
def test_a_search_rebuilds_its_supernet_by_itself(tmp_path, name, img) -> None:
    torch.manual_seed(0)
    sn = to_supernet(create_dense(name, num_classes=10, img_size=img), alpha=0.5).eval()
    randomize_supernet_state(sn, torch.Generator().manual_seed(1))
    spec = derive_spec(sn, name)
    save_search(sn, name, spec, tmp_path / "search.safetensors")
    again, state = load_search(tmp_path)
    assert (state.model, state.alpha, state.num_classes, state.img_size, state.weights) == (
        name, 0.5, 10, img, "search.safetensors")
    assert state.spec == spec.to_dict() and state.family == ("swin" if name == SWIN else "vit")
    x = torch.randn(2, 3, img, img)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), sn(x))


def test_a_finetune_checks_the_search_fits_its_model(tmp_path, tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense), alpha=0.5)
    save_search(sn, TINY, derive_spec(sn, TINY), tmp_path / "search.safetensors")
    got = searched_supernet(copy.deepcopy(tiny_dense), TINY, tmp_path / "search.safetensors")
    assert got.blocks[0].attn.alpha == 0.5  # the state's alpha, not the family's
    other = create_dense("deit_t", num_classes=7, img_size=TINY_IMG)
    with pytest.raises(SpvitError, match=r"was searched for deit_tiny_patch16_224 \(10 classes, 64 px\), not "
                                         r"deit_tiny_patch16_224 \(7 classes, 64 px\)") as e:
        searched_supernet(other, TINY, tmp_path / "search.safetensors")
    assert "\n" not in str(e.value)


def test_an_older_search_without_a_state(tmp_path, tiny_dense) -> None:
    sn = to_supernet(copy.deepcopy(tiny_dense))
    save_search(sn, TINY, derive_spec(sn, TINY), tmp_path / "search.safetensors")
    (tmp_path / STATE_FILE).unlink()
    got = searched_supernet(copy.deepcopy(tiny_dense), TINY, tmp_path / "search.safetensors")  # still loads
    assert got.blocks[0].attn.alpha == 0.01
    with pytest.raises(SpvitError, match=r"has no search_state.json .* re-run 'spvit-deploy search' into it") as e:
        load_search(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / STATE_FILE).write_text(json.dumps({"search_state_version": 1, "model": TINY}))
    with pytest.raises(SpvitError, match=r"search state lacks .*re-run 'spvit-deploy search' into that folder"):
        load_search(tmp_path)
