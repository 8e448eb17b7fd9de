"""The import graph of `spvit_deploy`, read from the source (every import, lazy ones inside functions
included): no cycles, and no stage imports a later stage."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "spvit_deploy"

# the pipeline's stages in order; a module may import its own stage or an earlier one
STAGES = ("base", "core", "train", "export", "passes", "engine", "bench", "serve", "demo", "cli")
# module (or package prefix) -> stage; the longest prefix wins
LAYER_OF = {
    "spvit_deploy": "base",  # the lazy facade (`from .. import __version__`)
    "spvit_deploy._io": "base", "spvit_deploy._lazy": "base", "spvit_deploy.errors": "base",
    "spvit_deploy.onnx_io": "base", "spvit_deploy.comparison": "base", "spvit_deploy.zoo": "base",
    "spvit_deploy.host": "base",
    "spvit_deploy.spec": "core", "spvit_deploy.models": "core", "spvit_deploy.macs": "core",
    "spvit_deploy.supernet": "core", "spvit_deploy.plain": "core", "spvit_deploy.materialization": "core",
    "spvit_deploy.run": "core", "spvit_deploy.verification": "core", "spvit_deploy.official": "core",
    "spvit_deploy.fused": "core", "spvit_deploy.model_source": "core", "spvit_deploy.families": "core",
    "spvit_deploy.official_swin": "core", "spvit_deploy.plain_layers": "core", "spvit_deploy.official_common": "core",
    "spvit_deploy.train": "train",
    "spvit_deploy.export": "export",
    "spvit_deploy.passes": "passes",
    "spvit_deploy.engine": "engine",
    "spvit_deploy.bench": "bench",
    "spvit_deploy.serve": "serve",
    "spvit_deploy.demo": "demo",  # the whole pipeline on real digits: train, export, bench
    "spvit_deploy.cli": "cli", "spvit_deploy.__main__": "cli",
    # each subcommand sits at the stage it runs
    "spvit_deploy.cli.common": "core",
    "spvit_deploy.cli.arch_stats": "core", "spvit_deploy.cli.verify": "core",
    "spvit_deploy.cli.materialize": "core", "spvit_deploy.cli.import_official": "core",
    "spvit_deploy.cli.train_options": "train", "spvit_deploy.cli.compress": "train",
    "spvit_deploy.cli.search": "train", "spvit_deploy.cli.finetune": "train", "spvit_deploy.cli.demo": "demo",
    "spvit_deploy.cli.export": "passes",  # export, then (--fp16/--plugins) the graph passes
    "spvit_deploy.cli.build_engine": "engine",
    "spvit_deploy.cli.benchmark": "bench",
    "spvit_deploy.cli.export_triton": "serve",
    # the latency table and its predictor serve the search (core); profiling and measuring export and time (bench)
    "spvit_deploy.latency": "core", "spvit_deploy.latency.profile": "bench", "spvit_deploy.latency.measure": "bench",
    "spvit_deploy.cli.latency_options": "train", "spvit_deploy.cli.profile_latency": "bench",
}
# known exceptions, each with its reason; remove an entry when its cause is fixed
ALLOWED = {
    # compress with a latency table measures the materialized network on the table's runtime (as the demo does)
    ("spvit_deploy.train.pipeline", "spvit_deploy.latency.measure"),
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the `spvit_deploy` modules it imports anywhere in its source."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                found = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in files]
                targets.update(found or ([name] if name in files else []))
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in files)
        graph[mod] = targets - {mod}
    return graph


def stage_of(module: str) -> str:
    prefix = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    if prefix is None:
        raise AssertionError(f"{module} has no stage: add it to LAYER_OF in {Path(__file__).name}")
    return LAYER_OF[prefix]


def later_stage_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, targets in sorted(graph.items()):
        for t in sorted(targets):
            if STAGES.index(stage_of(t)) > STAGES.index(stage_of(mod)) and (mod, t) not in ALLOWED:
                bad.append(f"{mod} ({stage_of(mod)}) imports {t} ({stage_of(t)})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_no_import_cycles(graph) -> None:
    assert cycles(graph) == []


def test_no_stage_imports_a_later_stage(graph) -> None:
    assert later_stage_imports(graph) == []


def test_every_module_has_a_stage(graph) -> None:
    for mod in graph:
        stage_of(mod)


def test_the_checks_fail_on_a_bad_edge(graph) -> None:
    later = {k: set(v) for k, v in graph.items()}
    later["spvit_deploy.export.onnx"].add("spvit_deploy.engine.build")
    assert later_stage_imports(later) == [
        "spvit_deploy.export.onnx (export) imports spvit_deploy.engine.build (engine)"]
    cyclic = {k: set(v) for k, v in graph.items()}
    cyclic["spvit_deploy.spec"].add("spvit_deploy.run")  # run imports spec
    assert any({"spvit_deploy.run", "spvit_deploy.spec"} <= set(c) for c in cycles(cyclic))


def test_the_graph_sees_lazy_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "spvit_deploy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    from . import c\n")
    (pkg / "c.py").write_text("import spvit_deploy.a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\n")
    g = import_graph(pkg)
    assert g["spvit_deploy.a"] == {"spvit_deploy.sub.b", "spvit_deploy.c"}
    assert g["spvit_deploy.sub.b"] == {"spvit_deploy.a"} and g["spvit_deploy.c"] == {"spvit_deploy.a"}
