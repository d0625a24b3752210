"""Shared fixtures: batches made by `carrental generate`, so that every test's data comes from the
repository itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from carrental.generate import generate

REPO_ROOT = Path(__file__).resolve().parent.parent

# Property tests stay quick in `make test`; HYPOTHESIS_PROFILE=thorough explores much more.
settings.register_profile("fast", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


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
