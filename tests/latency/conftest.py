"""Fixtures for the latency tests: a tiny real-image ImageFolder (digits) for the compress CLI checks."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spvit_deploy.demo import prepare_digits

    root = tmp_path_factory.mktemp("digits")
    prepare_digits(root, seed=0, val_fraction=0.5, per_class=2)
    return root
