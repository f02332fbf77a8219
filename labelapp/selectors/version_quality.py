"""Is a model version better than its parent? Figures that need no ground truth.

Per version:

* **batch confirm rate**: of the batch its iteration selected, confirmed / answered (confirmed +
  not confirmed; skipped and open cases are not answers), from the cases' pool states now;
* **precision after training**: the answers given *after* the version was created
  (``Label.created_at > version.created_at``, not undone, confirmed or not confirmed; a case's
  latest such answer) on cases in the version's own top-k by its scores: confirmed / answered,
  with the counts, so a small ``n`` is visible. ``k`` is :func:`top_k` (1% of the cases, at least
  :data:`TOP_K_MIN`);
* **overlap with its parent**: the share of the parent's top-k that is also in this version's
  top-k (1 = the same cases at the top; :func:`learning.stopping.top_k_overlap`);
* hidden checks of expert recall (seeds shown as batch cases) and their answers count in neither
  the confirm rate nor the precision: they measure the expert, not the model;
* **positives left**: the estimate of positives still in U and its interval, as the iteration's
  ``estimate`` stage stored it (absent before any batch was answered).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Count

from labelapp.models import BatchItem, Dataset, Label, ModelVersion, PoolState

#: The top-k of a version: ``TOP_K_SHARE`` of the cases, at least ``TOP_K_MIN`` (never more
#: than all of them).
TOP_K_SHARE = 0.01
TOP_K_MIN = 100


def top_k(n_cases: int) -> int:
    return min(n_cases, max(TOP_K_MIN, math.ceil(TOP_K_SHARE * n_cases)))


@dataclass
class VersionQuality:
    version_id: int
    iteration: int | None
    created_at: datetime
    parent_id: int | None
    batch_size: int
    batch_confirmed: int
    batch_answered: int
    batch_confirm_rate: float | None
    top_k: int
    after_answered: int
    after_confirmed: int
    after_precision: float | None
    parent_overlap: float | None
    positives_left: float | None
    positives_left_low: float | None
    positives_left_high: float | None
    positives_left_level: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _top_rows(version: ModelVersion, n_cases: int, k: int) -> np.ndarray | None:
    """Rows of the version's top ``k`` cases by its stored scores (None without scores)."""
    path = Path(version.artifact_dir) / "scores.npy"
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _top_rows_of_file(str(path), mtime, n_cases, k)


@functools.lru_cache(maxsize=128)
def _top_rows_of_file(path: str, mtime_ns: int, n_cases: int, k: int) -> np.ndarray | None:
    """Cached per file and size: the dataset page asks for every version on each visit."""
    scores = np.load(path)
    if len(scores) != n_cases:
        return None  # an earlier import's version
    top = np.sort(np.argpartition(-scores, k - 1)[:k]) if k else np.empty(0, np.intp)
    top.setflags(write=False)
    return top


def _positives_left(version: ModelVersion) -> dict[str, Any]:
    """The ``stopping`` metrics of the iteration that trained the version (else metrics.json)."""
    stopping = ((version.iteration.metrics if version.iteration_id else None) or {}).get("stopping")
    if stopping is None:
        path = Path(version.artifact_dir) / "metrics.json"
        if path.exists():
            stopping = json.loads(path.read_text()).get("stopping")
    stopping = stopping or {}
    return {
        "positives_left": stopping.get("estimated_positives_left"),
        "positives_left_low": stopping.get("positives_left_low"),
        "positives_left_high": stopping.get("positives_left_high"),
        "positives_left_level": (stopping.get("details") or {}).get("positives_left_level"),
    }


def _batch_counts(dataset: Dataset) -> dict[int, dict[str, int]]:
    """Per iteration id: its batch's size, confirmed and answered cases (pool states now)."""
    rows = (
        BatchItem.objects.filter(iteration__dataset=dataset, is_check=False)
        .values("iteration_id", "case__pool_state")
        .annotate(n=Count("id"))
    )
    out: dict[int, dict[str, int]] = {}
    for row in rows:
        entry = out.setdefault(row["iteration_id"], {"size": 0, "confirmed": 0, "answered": 0})
        state = row["case__pool_state"]
        entry["size"] += row["n"]
        if state in (PoolState.CONFIRMED, PoolState.NOT_CONFIRMED):
            entry["answered"] += row["n"]
            entry["confirmed"] += row["n"] if state == PoolState.CONFIRMED else 0
    return out


def _answers(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every answer that still counts: (case row, confirmed?, created_at), oldest first."""
    rows = list(
        Label.objects.filter(
            case__dataset=dataset,
            answer__in=(Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED),
            undone_by__isnull=True,
        )
        .without_checks()
        .order_by("created_at", "id")
        .values_list("case__row", "answer", "created_at")
    )
    case_rows = np.asarray([r[0] for r in rows], dtype=np.int64)
    confirmed = np.asarray([r[1] == Label.Answer.CONFIRMED for r in rows], dtype=bool)
    times = np.asarray([r[2].timestamp() for r in rows], dtype=np.float64)
    return case_rows, confirmed, times


def _after(answers, since: datetime, top: np.ndarray | None) -> tuple[int, int]:
    """(answered, confirmed) among cases in ``top`` by their latest answer after ``since``."""
    case_rows, confirmed, times = answers
    if top is None:
        return 0, 0
    later = times > since.timestamp()
    latest: dict[int, bool] = {}
    for row, yes in zip(case_rows[later], confirmed[later], strict=True):
        latest[int(row)] = bool(yes)  # oldest first: the last one wins
    if not latest:
        return 0, 0
    rows = np.fromiter(latest, dtype=np.int64, count=len(latest))
    inside = np.isin(rows, top)
    yes = np.fromiter(latest.values(), dtype=bool, count=len(latest))
    return int(inside.sum()), int((inside & yes).sum())


def dataset_version_quality(dataset: Dataset) -> list[VersionQuality]:
    """Every model version of the dataset, oldest first, with its figures."""
    versions = list(dataset.model_versions.select_related("iteration").order_by("created_at", "id"))
    return versions_quality(dataset, versions)


def versions_quality(dataset: Dataset, versions: list[ModelVersion]) -> list[VersionQuality]:
    """The figures of ``versions`` (of one dataset), in their order."""
    k = top_k(dataset.n_cases)
    batches = _batch_counts(dataset)
    answers = _answers(dataset)
    tops: dict[int, np.ndarray | None] = {}
    by_pk = {version.pk: version for version in versions}

    def top_of(version: ModelVersion) -> np.ndarray | None:
        if version.pk not in tops:
            tops[version.pk] = _top_rows(version, dataset.n_cases, k)
        return tops[version.pk]

    out = []
    for version in versions:
        batch = batches.get(version.iteration_id or -1, {"size": 0, "confirmed": 0, "answered": 0})
        top = top_of(version)
        answered, confirmed = _after(answers, version.created_at, top)
        overlap = None
        parent = by_pk.get(version.parent_id) or (version.parent if version.parent_id else None)
        if parent is not None and top is not None and (parent_top := top_of(parent)) is not None:
            overlap = round(len(np.intersect1d(top, parent_top)) / k, 4) if k else None
        out.append(
            VersionQuality(
                version_id=version.pk,
                iteration=version.iteration.number if version.iteration_id else None,
                created_at=version.created_at,
                parent_id=version.parent_id,
                batch_size=batch["size"],
                batch_confirmed=batch["confirmed"],
                batch_answered=batch["answered"],
                batch_confirm_rate=_ratio(batch["confirmed"], batch["answered"]),
                top_k=k,
                after_answered=answered,
                after_confirmed=confirmed,
                after_precision=_ratio(confirmed, answered),
                parent_overlap=overlap,
                **_positives_left(version),
            )
        )
    return out


def version_quality(version: ModelVersion) -> VersionQuality:
    return versions_quality(version.dataset, [version])[0]
