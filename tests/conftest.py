"""Shared fixtures. Reference data is read from HACK_SHARED_DATA (default ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "hack-release").is_dir():
        pytest.skip(f"reference data not found at {path} (set HACK_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def release_dir(shared_data: Path) -> Path:
    return shared_data / "hack-release"


@pytest.fixture(scope="session")
def release_model(release_dir: Path):
    from hack_model import HACK

    return HACK(release_dir)


@pytest.fixture(scope="module")
def model():
    """The embedded default model, one per test module (a module may move or change it)."""
    from hack_model import HACK

    return HACK()


@pytest.fixture(scope="module")
def ev(model):
    """The fitting evaluator of `model`."""
    from fitting.fit import evaluator_for

    return evaluator_for(model)
