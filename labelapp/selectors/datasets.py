"""Reads about datasets: lists with counts, and where a dataset's columnar snapshot lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from labelapp.models import Case, Dataset, PoolState


def dataset_snapshot_dir(name: str) -> Path:
    """The folder with the dataset's snapshot in the SPEC's dataset format.

    Raises ``Dataset.DoesNotExist`` for an unknown name.
    """
    dataset = Dataset.objects.get(name=name)
    return snapshot_dir_for(dataset)


def snapshot_dir_for(dataset: Dataset) -> Path:
    """``Dataset.snapshot_dir`` (relative to ``ARTIFACTS_DIR`` unless absolute), or the default
    ``<ARTIFACTS_DIR>/datasets/<id>``."""
    artifacts = Path(settings.ARTIFACTS_DIR)
    if dataset.snapshot_dir:
        folder = Path(dataset.snapshot_dir)
        return folder if folder.is_absolute() else artifacts / folder
    return artifacts / "datasets" / str(dataset.pk)


# Cases an expert has answered (confirmed or not); skipped ones are not labeled.
LABELED_STATES = (PoolState.CONFIRMED, PoolState.NOT_CONFIRMED)


def _labeled_count() -> Subquery:
    """Per dataset, by the (dataset, pool_state) index: no scan of millions of cases."""
    labeled = (
        Case.objects.filter(dataset=OuterRef("pk"), pool_state__in=LABELED_STATES)
        .order_by()
        .values("dataset")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(labeled, output_field=IntegerField()), 0)


def dataset_list() -> QuerySet[Dataset]:
    """Datasets by name, each with ``n_labeled``."""
    return Dataset.objects.order_by("name").annotate(n_labeled=_labeled_count())


def dataset_detail(name: str) -> Dataset:
    """One dataset with ``n_labeled``; raises ``Dataset.DoesNotExist``."""
    return dataset_list().get(name=name)


def dataset_pool_counts(dataset: Dataset) -> dict[str, int]:
    """Number of cases per pool state, every state present (0 where none).

    Every state but U is small and counted through the ``(dataset, pool_state)`` index; U is
    the rest of ``Dataset.n_cases``, so the page never counts the million unlabeled rows.
    """
    counts = {state.value: 0 for state in PoolState}
    others = (
        dataset.cases.filter(pool_state__in=[s for s in PoolState if s != PoolState.UNLABELED])
        .order_by()
        .values_list("pool_state")
        .annotate(n=Count("id"))
    )
    for state, n in others:
        counts[state] = n
    counts[PoolState.UNLABELED.value] = max(0, dataset.n_cases - sum(counts.values()))
    return counts


#: How the dataset page names each pool state, in the loop's order, with what it means.
POOL_STATE_ROWS = (
    (PoolState.POSITIVE, "Seed positives", "known positives: from the import or the Seeds page"),
    (PoolState.CONFIRMED, "Confirmed cash-out", "by an expert; trains as a positive"),
    (
        PoolState.SHOWN,
        "In a batch, not answered yet",
        "selected by an iteration for the experts, opened or not",
    ),
    (PoolState.SKIPPED, "Skipped", "an expert could not judge it; a later batch may offer it"),
    (
        PoolState.NOT_CONFIRMED,
        "Not confirmed",
        "answered without evidence; trains as unlabeled, never offered again",
    ),
    (PoolState.UNLABELED, "Unlabeled", "never in a batch"),
)


def dataset_pool_rows(dataset: Dataset, user: Any = None) -> list[dict[str, object]]:
    """The dataset page's pool table: one row per state with a human label and its meaning.

    The "in a batch" row also says how many of those cases an expert holds open right now:
    being in a batch is not being opened. An expert (``user``) sees hidden checks counted as
    the batch cases they look like.
    """
    from django.db.models import Q
    from django.utils import timezone

    from labelapp.models import BatchItem
    from labelapp.selectors.checks import pool_counts_shown_to

    counts = dataset_pool_counts(dataset)
    if user is not None:
        counts = pool_counts_shown_to(user, dataset, counts)
    held = (
        BatchItem.objects.filter(
            Q(case__pool_state=PoolState.SHOWN) | Q(is_check=True),
            iteration__dataset=dataset,
            status=BatchItem.Status.OPEN,
            assigned_to__isnull=False,
            lease_expires_at__gt=timezone.now(),
        )
        .values("case")
        .distinct()
        .count()
    )
    rows = []
    for state, label, meaning in POOL_STATE_ROWS:
        row = {"state": state.value, "label": label, "meaning": meaning, "n": counts[state.value]}
        if state == PoolState.SHOWN:
            row["held"] = held
        rows.append(row)
    return rows
