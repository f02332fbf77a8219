"""Reads about datasets: lists with counts, and where a dataset's columnar snapshot lives."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import Count, QuerySet

from labelapp.models import Dataset, PoolState


def dataset_snapshot_dir(name: str) -> Path:
    """The folder with the dataset's snapshot in the SPEC's dataset format.

    Raises ``Dataset.DoesNotExist`` for an unknown name.
    """
    dataset = Dataset.objects.get(name=name)
    return snapshot_dir_for(dataset)


def snapshot_dir_for(dataset: Dataset) -> Path:
    if dataset.snapshot_dir:
        return Path(dataset.snapshot_dir)
    return Path(settings.ARTIFACTS_DIR) / "datasets" / str(dataset.pk)


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.order_by("name")


def dataset_pool_counts(dataset: Dataset) -> dict[str, int]:
    """Number of cases per pool state, every state present (0 where none)."""
    counts = {state.value: 0 for state in PoolState}
    for state, n in dataset.cases.order_by().values_list("pool_state").annotate(n=Count("id")):
        counts[state] = n
    return counts
