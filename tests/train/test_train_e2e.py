"""End to end: compress deit_b (random weights) on a tiny ImageFolder for a few steps; the quick demo."""
from __future__ import annotations

import json

import pytest

from spvit_deploy.run import load_run

from train_testing import run_cli


@pytest.mark.slow
def test_compress_deit_b_a_few_steps(tmp_path) -> None:
    from PIL import Image

    for split, n in (("train", 2), ("val", 1)):
        for c in range(2):
            (tmp_path / "data" / split / str(c)).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (64, 64), (40 * i + 100 * c, 80, 120)).save(tmp_path / "data" / split / str(c) / f"{i}.png")
    out = tmp_path / "run"
    r = run_cli(["compress", "--model", "deit_b", "--data", str(tmp_path / "data"), "--no-pretrained", "--out", str(out),
                 "--target-gmacs", "8.4", "--search-epochs", "1", "--finetune-epochs", "1", "--batch-size", "2",
                 "--no-progress", "--json"], timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["model"] == "deit_base_patch16_224" and abs(rep["arch"]["target_error"]) <= 0.05
    run = load_run(out)
    assert run.spec.num_classes == 2 and len(run.spec.blocks) == 12
    assert {"arch.json", "model.safetensors", "meta.json", "metrics.jsonl", "report.json", "report.md",
            "search.png"} <= {p.name for p in out.iterdir()}


def test_demo_quick_and_idempotent(tmp_path) -> None:
    out = tmp_path / "demo"
    r = run_cli(["demo", "--out", str(out), "--quick", "--no-export", "--no-progress"])
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert set(rep) >= {"dense", "compressed", "seconds"} and isinstance(rep["seconds"], float)
    assert rep["compressed"]["gmacs"] <= 0.55 * rep["dense"]["gmacs"] and abs(rep["compressed"]["target_error"]) <= 0.05
    again = run_cli(["demo", "--out", str(out), "--quick", "--no-export", "--no-progress", "--json"])
    assert again.returncode == 0 and json.loads(again.stdout)["compressed"] == rep["compressed"]
    assert len(json.loads((out / "timings.json").read_text())["sessions"]) == 1  # the re-run trained nothing


def test_shipped_teacher_is_used_only_for_its_split_and_recipe(tmp_path) -> None:
    """The package's pre-trained teacher fits the demo's seed-0 split and recipe, loads into the
    model, and is refused for another split (the demo then trains one)."""
    from safetensors.torch import load_file

    from spvit_deploy.models import create_dense
    from spvit_deploy.demo import MODEL, SHIPPED_TEACHER, DemoPlan, prepare_digits, shipped_teacher

    assert (SHIPPED_TEACHER / "model.safetensors").is_file(), "run benchmarks/digits_teacher.py"
    plan = DemoPlan()
    split = prepare_digits(tmp_path / "data", 0, plan.val_fraction)
    info = shipped_teacher(plan, 0, split, tmp_path / "teacher")
    assert info is not None and info["top1"] > 95.0 and info["source"].startswith("shipped")
    model = create_dense(MODEL, num_classes=10)
    model.load_state_dict(load_file(str(tmp_path / "teacher" / "model.safetensors")), strict=True)
    assert json.loads((tmp_path / "teacher" / "teacher.json").read_text())["top1"] == info["top1"]
    other = {**split, "split_sha256": "0" * 64}
    assert shipped_teacher(plan, 0, other, tmp_path / "t2") is None and not (tmp_path / "t2").exists()
    assert shipped_teacher(DemoPlan(teacher_epochs=3), 0, split, tmp_path / "t3") is None


def test_search_then_finetune_from_the_search_state(digits, tmp_path) -> None:
    """`search` writes `search_state.json`; the search rebuilds its supernet by itself, a fine-tune starts
    from it, and a fine-tune for another input size is refused in one line."""
    import torch

    from spvit_deploy.errors import SpvitError
    from spvit_deploy.supernet.searched import load_search
    from spvit_deploy.train import DataConfig, config_for, finetune, search

    from train_testing import NANO

    kw = dict(target_ratio=0.5, search_epochs=1, finetune_epochs=1, amp="none", distill="none", seed=0)
    data = DataConfig(root=str(digits), batch_size=8)
    cfg = config_for(NANO, data, **kw)
    search(cfg, tmp_path / "s", device="cpu", threads=1, progress=False)
    supernet, state = load_search(tmp_path / "s")
    assert state.model == NANO and state.num_classes == 10 and state.spec == json.loads(
        (tmp_path / "s" / "arch.json").read_text())
    assert supernet(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    rep = finetune(cfg, tmp_path / "f", arch=tmp_path / "s" / "arch.json", supernet=tmp_path / "s", device="cpu",
                   threads=1, progress=False)
    assert rep["compressed"]["gmacs"] <= 0.55 * rep["dense"]["gmacs"]
    other = config_for(NANO, data, img_size=48, **kw)
    with pytest.raises(SpvitError, match=r"was searched for vit_nano_patch4_32 \(10 classes, 32 px\), not "
                                         r"vit_nano_patch4_32 \(10 classes, 48 px\)"):
        finetune(other, tmp_path / "g", arch=tmp_path / "s" / "arch.json", supernet=tmp_path / "s", device="cpu",
                 threads=1, progress=False)
    bad = tmp_path / "bad"  # an unreadable search state is refused before the fine-tune writes anything
    bad.mkdir()
    (bad / "search_state.json").write_text(json.dumps({"search_state_version": 1, "bogus": 2}))
    with pytest.raises(SpvitError, match=r"unknown search state key\(s\) \['bogus'\]"):
        finetune(cfg, tmp_path / "h", arch=tmp_path / "s" / "arch.json", supernet=bad, device="cpu", threads=1,
                 progress=False)
    assert not (tmp_path / "h").exists()
