"""Shared fixtures: paths to the real data beside the checkout (``../shared/data``)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
RECIPES = REPO / "recipes"


def require_shared() -> None:
    if not DATA.is_dir():
        pytest.fail(f"real test data expected at {DATA} (the ../shared folder beside the checkout)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    require_shared()
    return DATA
