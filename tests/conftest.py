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


def generated_batch(tmp_path_factory: pytest.TempPathFactory, name: str, **options) -> Path:
    """A fresh folder `name` with the batch `carrental generate` writes with `options`."""
    out = tmp_path_factory.mktemp(name)
    generate(out, **options)
    return out


def write_orphan_rentals(rentals: Path, out: Path, id_prefix: str, count: int) -> Path:
    """The first `count` rentals of `rentals` under new ids (their first character replaced by
    `id_prefix`) and with a vehicle no vehicles file has: rows that pass upload validation and
    break vehicle_id_exists when a run checks them."""
    header, *rows = rentals.read_text().splitlines()
    orphans = [
        ",".join([id_prefix + rental[1:], user, "ffffffffff", *rest])
        for rental, user, _, *rest in (row.split(",") for row in rows[:count])
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([header, *orphans]) + "\n")
    return out


@pytest.fixture(scope="session")
def dirty_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated batch with 3 % injected defects and its defects.json."""
    return generated_batch(tmp_path_factory, "dirty_batch", scale=0.2, seed=7, dirty_rate=0.03)


@pytest.fixture(scope="session")
def clean_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_batch(tmp_path_factory, "clean_batch", scale=0.2, seed=11)
