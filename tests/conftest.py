"""Shared fixtures: where the real data lives, and skipping cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with a clear message."""
    path = SHARED_DATA / name
    if not (path / "cases.parquet").exists():
        pytest.skip(f"real dataset {name!r} not found at {path} (../shared/data is absent)")
    return path
