"""Shared fixtures. Tests never read ../shared: data comes from `carrental generate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from carrental.generate import generate

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def dirty_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated batch with 3 % injected defects and its defects.json."""
    out = tmp_path_factory.mktemp("dirty_batch")
    generate(out, scale=0.2, seed=7, dirty_rate=0.03)
    return out


@pytest.fixture(scope="session")
def clean_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean_batch")
    generate(out, scale=0.2, seed=11)
    return out
