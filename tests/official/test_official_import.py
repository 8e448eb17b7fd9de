"""import-official: random official-format checkpoints, imported, equal the official forward pass
(an independent implementation in official_ref.py) in fp32."""
from __future__ import annotations

import argparse
import json

import pytest
import torch

from spvit_deploy.cli import main
from spvit_deploy.official import PLACEHOLDER_KEPT, import_official
from spvit_deploy.run import load_run
from spvit_deploy.spec import ArchSpec, BlockSpec, load_spec

from official_ref import codes, official_forward, random_official_state, search_file_state

TINY, DIM, HEADS, WIDTH, IMG, CLASSES = "deit_tiny_patch16_224", 192, 3, 768, 64, 10
OPS = ["conv3x3", "conv1x1", "msa", "conv3x3", "msa", "conv1x1", "msa", "msa", "conv3x3", "msa", "conv1x1", "msa"]
TOL = 1e-5


def random_kept(seed: int, empty_block: int | None = None, max_width: int = WIDTH) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    kept = []
    for i in range(len(OPS)):
        n = 0 if i == empty_block else int(torch.randint(1, max_width, (1,), generator=g))
        kept.append(sorted(torch.randperm(WIDTH, generator=g)[:n].tolist()))
    return kept


def compare(model: torch.nn.Module, sd: dict, ops: list[str], seed: int = 0, batch: int = 2, img: int = IMG,
            heads: int = HEADS) -> float:
    x = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(seed))
    ref_tokens, ref_logits = official_forward(sd, ops, x, heads)
    with torch.no_grad():
        tokens = model.forward_features(x)
        logits = model.forward_head(tokens)
    return max(float((tokens - ref_tokens).abs().max()), float((logits - ref_logits).abs().max()))


def save_training_checkpoint(sd: dict, path) -> None:
    """As the official main_pruning.py saves: DDP prefixes, optimizer state, epoch, args."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer1": opt.state_dict(), "epoch": 129,
                "args": argparse.Namespace(lr=5e-5, assigned_indicators=codes(OPS), model="spvit_deit_tiny_patch16_224")},
               path)


@pytest.fixture(scope="module")
def tiny():
    """A checkpoint with every conv op, one fully pruned FFN, random trims; its kept units."""
    kept = random_kept(seed=1, empty_block=6)
    return random_official_state(OPS, [len(k) for k in kept], DIM, HEADS, IMG, CLASSES, seed=0), kept


@pytest.mark.parametrize("source", ["search", "indicators", "arch"])
def test_import_equals_official_forward(tiny, source, tmp_path) -> None:
    sd, kept = tiny
    if source == "search":
        plain, spec = import_official(sd, "deit_t", indicators=codes(OPS), search=search_file_state(kept, WIDTH))
        assert [list(b.ffn_kept) for b in spec.blocks] == kept and not spec.extra
    elif source == "indicators":
        plain, spec = import_official(sd, "deit_t", indicators=json.dumps(codes(OPS)))
        assert [b.ffn_kept for b in spec.blocks] == [tuple(range(len(k))) for k in kept]
        assert spec.extra["ffn_kept"] == PLACEHOLDER_KEPT
    else:
        arch = ArchSpec(model=TINY, img_size=224, num_classes=1000, source="test",
                        blocks=tuple(BlockSpec(op, tuple(k)) for op, k in zip(OPS, kept)))
        arch.save(tmp_path / "arch.json")
        plain, spec = import_official(sd, "deit_t", arch=str(tmp_path / "arch.json"))
    assert spec.ops == OPS and (spec.img_size, spec.num_classes) == (IMG, CLASSES)
    assert compare(plain, sd, OPS, batch=2) <= TOL


def test_the_oracle_can_tell(tiny) -> None:
    """The comparison is sensitive to what matters: kernel position order and head mixing."""
    sd, kept = tiny
    plain, _ = import_official(sd, "deit_t", indicators=codes(OPS), search=search_file_state(kept, WIDTH))
    x = torch.randn(1, 3, IMG, IMG)
    with torch.no_grad():
        ours = plain(x)
    _, row_major = official_forward(sd, OPS, x, HEADS, row_major=True)
    uniform = {k: (torch.ones_like(v) if k.endswith("head_probs") else v) for k, v in sd.items()}
    _, uniform_mix = official_forward(uniform, OPS, x, HEADS)
    assert (ours - row_major).abs().max() > 1e-3 and (ours - uniform_mix).abs().max() > 1e-3


def test_cli_writes_a_run_folder(tmp_path, capsys) -> None:
    kept = random_kept(seed=2)  # every FFN keeps units
    sd = random_official_state(OPS, [len(k) for k in kept], DIM, HEADS, IMG, CLASSES, seed=5)
    save_training_checkpoint(sd, tmp_path / "best_checkpoint.pth")
    torch.save({"model": search_file_state(kept, WIDTH)}, tmp_path / "search.pth")
    config = tmp_path / "spvit_deit_ti_ft.json"
    config.write_text(json.dumps({"model": "spvit_deit_tiny_patch16_224", "assigned_indicators": codes(OPS)}))
    out = tmp_path / "run"
    rc = main(["import-official", str(tmp_path / "best_checkpoint.pth"), "--model", "deit_t", "--indicators", str(config),
               "--search-ckpt", str(tmp_path / "search.pth"), "--out", str(out), "--spec-out", str(tmp_path / "s.json"),
               "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run"] == str(out) and printed["ops"] == OPS
    run = load_run(out)
    assert [list(b.ffn_kept) for b in run.spec.blocks] == kept and load_spec(tmp_path / "s.json") == run.spec
    assert run.meta["source"]["search_ckpt"] == str(tmp_path / "search.pth")
    assert compare(run.model, sd, OPS, seed=1) <= TOL


def test_cli_indicators_only_says_kept_units_are_placeholders(tmp_path, capsys) -> None:
    kept = random_kept(seed=3, max_width=200)
    sd = random_official_state(OPS, [len(k) for k in kept], DIM, HEADS, IMG, CLASSES, seed=6)
    torch.save({"model": sd}, tmp_path / "ft.pth")
    rc = main(["import-official", str(tmp_path / "ft.pth"), "--model", "deit_t", "--indicators", str(codes(OPS)),
               "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert rc == 0 and "note: FFN kept units are unknown" in captured.err and "wrote" in captured.out
    arch = json.loads((tmp_path / "run" / "arch.json").read_text())
    assert arch["extra"]["ffn_kept"] == PLACEHOLDER_KEPT
    assert compare(load_run(tmp_path / "run").model, sd, OPS) <= TOL


@pytest.mark.slow
def test_deit_base_paper_arch(tmp_path) -> None:
    """Done-when: an official DeiT-B checkpoint for paper:deit_base -> a run folder equal to the official model."""
    spec = load_spec("paper:deit_base")
    sd = random_official_state(spec.ops, [b.ffn_width for b in spec.blocks], 768, 12, 224, 1000, seed=7)
    torch.save({"model": sd}, tmp_path / "deit_b.pth")
    out = tmp_path / "run"
    assert main(["import-official", str(tmp_path / "deit_b.pth"), "--model", "deit_b", "--arch", "paper:deit_base",
                 "--out", str(out)]) == 0
    run = load_run(out)
    assert run.spec == spec and run.meta["gmacs"] == pytest.approx(8.4, abs=0.1)
    assert compare(run.model, sd, spec.ops, batch=1, img=224, heads=12) <= TOL
