"""The `spvit-deploy` command: a thin argparse front over the Python API, one module per subcommand.

Every `SpvitError` becomes one line on stderr and exit status 2, never a traceback. Every path a
command writes is checked before it starts, so a path that cannot be created fails at once.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> module in spvit_deploy.cli (each has `add_parser(sub)` and `run(args) -> int`)
COMMANDS = {
    "arch-stats": "arch_stats",
    "verify": "verify",
    "materialize": "materialize",
    "export-triton": "export_triton",
    "import-official": "import_official",
    "compress": "compress",
    "search": "search",
    "finetune": "finetune",
    "build-engine": "build_engine",
    "demo": "demo",
    "export": "export",
    "benchmark": "benchmark",
    "profile-latency": "profile_latency",
}

# the options that name a file a command writes; any other --out or --repo names a folder it writes
OUTPUT_FILES: dict[str, tuple[str, ...]] = {
    "export": ("out",),
    "build-engine": ("out", "keep_onnx", "timing_cache"),
    "import-official": ("spec_out",),
    "profile-latency": ("out",),
}
OUTPUT_FOLDERS = ("out", "repo")


def check_outputs(args: argparse.Namespace) -> None:
    """Raise a one-line `SpvitError` if a path the command writes cannot be written (creates nothing)."""
    from .._io import check_writable

    files = OUTPUT_FILES.get(args.command, ())
    for dest in (*files, *(d for d in OUTPUT_FOLDERS if d not in files)):
        path = getattr(args, dest, None)
        if path is None or (dest == "timing_cache" and str(path).lower() == "none"):
            continue
        check_writable(path, folder=dest not in files, what="--" + dest.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="spvit-deploy",
        description="SPViT: prune ViT self-attention into convolutions and deploy the result.",
    )
    parser.add_argument("--version", action="version", version=f"spvit-deploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f".{module}", __name__)
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..errors import SpvitError

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_outputs(args)
        return int(args._run(args) or 0)
    except SpvitError as e:
        print(f"spvit-deploy {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spvit-deploy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
