"""Fixtures for the training tests: a tiny real-image ImageFolder (digits). CLI helpers: train_testing.py."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 digits per class: 60 train / 20 val images, 32x32 PNGs."""
    from spvit_deploy.demo import prepare_digits

    root = tmp_path_factory.mktemp("digits")
    prepare_digits(root, seed=0, val_fraction=0.2, per_class=8)
    return root
