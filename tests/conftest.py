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


def read_split(out: Path, split: str = "train"):
    """Every row of one split of a dataset, read into memory (a test may rewrite a shard afterwards)."""
    import json

    import pyarrow as pa

    state = json.loads((out / split / "state.json").read_text())
    return pa.concat_tables(pa.ipc.open_stream((out / split / f["filename"]).read_bytes()).read_all() for f in state["_data_files"])
