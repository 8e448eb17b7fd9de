"""The typed artefacts: each round-trips through JSON, and the one validator refuses unknown keys,
missing keys, wrong types, impossible values and versions it cannot read, in one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from spvit_deploy.artefacts import BenchResults, DeployMetadata, EngineSidecar, RunMeta, SearchState, load
from spvit_deploy.errors import SpvitError

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ort_cpu" / "results.json"

EXAMPLES = {
    RunMeta: {"meta_version": 1, "spvit_deploy": "0.1.0", "model": "deit_tiny_patch16_224", "num_classes": 10,
              "data_config": {"input_size": [3, 64, 64], "mean": [0.5] * 3}, "gmacs": 0.06, "params": 5_000_000,
              "source": {"checkpoint": "w.pth"}},
    SearchState: {"search_state_version": 1, "spvit_deploy": "0.1.0", "model": "deit_tiny_patch16_224", "family": "vit",
                  "alpha": 0.01, "img_size": 64, "num_classes": 10, "weights": "search.safetensors",
                  "spec": {"schema_version": 1}},
    DeployMetadata: {"metadata_version": 1, "spvit_deploy": "0.1.0", "variant": "compressed",
                     "model": "deit_tiny_patch16_224", "input_size": [3, 64, 64], "mean": [0.485, 0.456, 0.406],
                     "std": [0.229, 0.224, 0.225], "interpolation": "bicubic", "crop_pct": 0.875, "num_classes": 10,
                     "gmacs": 0.06, "opset": 18, "pad_widths": None, "spec": {"schema_version": 1},
                     "precision": "fp16", "fp16": {"casts": 3}},
    EngineSidecar: {"sidecar_version": 1, "spvit_deploy": "0.1.0", "tensorrt_version": "10.13.3.9",
                    "gpu": "NVIDIA H100", "compute_capability": "9.0", "precision": "fp16", "strongly_typed": True,
                    "profile": {"min": 1, "opt": 16, "max": 64}, "profiles": [{"min": 1, "opt": 16, "max": 64}],
                    "plugins": [], "build_seconds": 12.5, "model": "deit_tiny_patch16_224", "variant": "compressed"},
    BenchResults: {"results_version": 1, "kind": "spvit-deploy benchmark: dense vs compressed",
                   "settings": {"batches": [1]}, "environment": {"cpu": "x"}, "models": [], "speedups": [],
                   "skipped": [], "ablations": []},
}
IMPOSSIBLE = {
    RunMeta: ("params", -1),
    SearchState: ("alpha", 0.0),
    DeployMetadata: ("variant", "half"),
    EngineSidecar: ("profiles", [{"min": 4, "opt": 2, "max": 8}]),
}


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_round_trip(cls) -> None:
    obj = load(cls, EXAMPLES[cls], "x.json")
    again = load(cls, json.loads(json.dumps(obj.to_dict())), "x.json")
    given = {k: v for k, v in EXAMPLES[cls].items() if v is not None}
    assert again == obj and {k: v for k, v in again.to_dict().items() if v is not None} == given


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_unknown_key_is_one_line(cls) -> None:
    with pytest.raises(SpvitError, match=r"x.json: unknown .* key\(s\) \['colour'\]") as e:
        load(cls, {**EXAMPLES[cls], "colour": "red"}, "x.json")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_versions_it_cannot_read_say_how_to_regenerate(cls) -> None:
    key = cls.VERSION_KEY
    with pytest.raises(SpvitError, match="newer than this spvit-deploy reads") as e:
        load(cls, {**EXAMPLES[cls], key: cls.VERSION + 1}, "x.json")
    assert cls.REGENERATE in str(e.value)
    with pytest.raises(SpvitError, match=f"no valid '{key}'") as e:
        load(cls, {k: v for k, v in EXAMPLES[cls].items() if k != key}, "x.json")
    assert cls.REGENERATE in str(e.value)


@pytest.mark.parametrize("cls", list(EXAMPLES), ids=lambda c: c.__name__)
def test_missing_keys_and_wrong_types(cls) -> None:
    required = "kind" if cls is BenchResults else "spvit_deploy"
    with pytest.raises(SpvitError, match=rf"lacks \['{required}'\]"):
        load(cls, {k: v for k, v in EXAMPLES[cls].items() if k != required}, "x.json")
    with pytest.raises(SpvitError, match=f"'{required}' must be str"):
        load(cls, {**EXAMPLES[cls], required: 3}, "x.json")


@pytest.mark.parametrize("cls", list(IMPOSSIBLE), ids=lambda c: c.__name__)
def test_impossible_values(cls) -> None:
    key, value = IMPOSSIBLE[cls]
    with pytest.raises(SpvitError, match="impossible"):
        load(cls, {**EXAMPLES[cls], key: value}, "x.json")


def test_committed_benchmark_results_load() -> None:
    from spvit_deploy.bench.report import read_results

    assert read_results(RESULTS.parent)["results_version"] == 1
    with pytest.raises(SpvitError, match="cannot read benchmark results"):
        read_results(RESULTS.parent / "missing.json")


def test_run_folder_meta_is_validated(tmp_path, tiny_spec) -> None:
    from spvit_deploy.plain import build_plain
    from spvit_deploy.run import META_FILE, load_run, save_run

    run = save_run(build_plain(tiny_spec), tiny_spec, tmp_path / "run", source={"checkpoint": "w.pth"})
    assert load_run(run).meta["source"] == {"checkpoint": "w.pth"}
    meta = json.loads((run / META_FILE).read_text())
    (run / META_FILE).write_text(json.dumps({**meta, "meta_version": 0}))
    with pytest.raises(SpvitError, match=r"run meta version 0 is no longer read .* re-write the run folder"):
        load_run(run)
