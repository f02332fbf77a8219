"""Reads about iterations and model versions: progress with ETA, history, comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from labelapp.models import Dataset, Iteration, ModelVersion

#: What ``progress_done``/``progress_total`` count in each stage (pretraining: seconds of its
#: time budget, so that its ETA is the budget left).
STAGE_UNITS = {
    "pretrain": "s",
    "embed": "cases",
    "features": "cases",
    "train": "EM rounds",
    "score": "cases",
    "finalize": "cases",
}
#: A linear ETA from the first few percent of a stage mostly measures its start-up: not shown.
ETA_MIN_FRACTION = 0.05


@dataclass
class Progress:
    percent: float | None
    elapsed_s: float | None
    stage_elapsed_s: float | None
    eta_s: float | None
    active: bool
    unit: str = ""


def iteration_list(dataset: Dataset) -> QuerySet[Iteration]:
    return dataset.iterations.select_related("launched_by", "model_version").order_by("-number")


def iteration_progress(iteration: Iteration) -> Progress:
    """Percent of the current stage, time since start, and an ETA for the stage.

    A stage counted in seconds of a budget (pretraining) ends when the budget is spent; others
    get a linear ETA once :data:`ETA_MIN_FRACTION` of them is done.
    """
    now = timezone.now()
    active = iteration.status in Iteration.ACTIVE_STATUSES
    end = now if active else (iteration.finished_at or now)
    elapsed = (end - iteration.started_at).total_seconds() if iteration.started_at else None
    stage_elapsed = (
        (end - iteration.stage_started_at).total_seconds() if iteration.stage_started_at else None
    )
    percent = eta = None
    unit = STAGE_UNITS.get(iteration.stage, "")
    if iteration.status == Iteration.Status.DONE:
        percent = 100.0
    elif iteration.progress_total:
        fraction = min(iteration.progress_done / iteration.progress_total, 1.0)
        percent = round(100.0 * fraction, 1)
        if active and unit == "s":
            eta = float(max(iteration.progress_total - iteration.progress_done, 0))
        elif active and fraction >= ETA_MIN_FRACTION and stage_elapsed is not None:
            eta = stage_elapsed * (1 - fraction) / fraction
    return Progress(percent, elapsed, stage_elapsed, eta, active, unit)


def iteration_history(dataset: Dataset) -> list[dict[str, Any]]:
    """Per finished iteration: labels spent so far and positives found (confirmed) so far."""
    points = []
    for it in dataset.iterations.filter(status=Iteration.Status.DONE).order_by("number"):
        m = it.metrics or {}
        points.append(
            {
                "number": it.number,
                "labels_spent": int(m.get("labels_spent", 0)),
                "positives_found": int(m.get("positives_found", 0)),
                "positives": int(m.get("positives", 0)),
                "suggest_stop": bool((m.get("stopping") or {}).get("suggest_stop")),
            }
        )
    return points


def model_version_list(dataset: Dataset) -> QuerySet[ModelVersion]:
    return dataset.model_versions.select_related("iteration", "parent").order_by("-created_at")


def model_version_lineage(version: ModelVersion, limit: int = 50) -> list[ModelVersion]:
    """The version, its parent, its parent's parent ... (newest first)."""
    chain, seen = [], set()
    current: ModelVersion | None = version
    while current is not None and current.pk not in seen and len(chain) < limit:
        chain.append(current)
        seen.add(current.pk)
        current = current.parent
    return chain


COMPARED_METRICS = (
    "positives",
    "unlabeled",
    "reliable_negatives",
    "spies",
    "spy_threshold",
    "n_features",
)


def model_version_compare(a: ModelVersion, b: ModelVersion) -> dict[str, Any]:
    """Side-by-side rows of parameters, metrics and top features (marking differences)."""

    def rows(left: dict, right: dict, keys) -> list[dict[str, Any]]:
        return [
            {"name": k, "a": left.get(k), "b": right.get(k), "differs": left.get(k) != right.get(k)}
            for k in keys
        ]

    param_keys = sorted(set(a.params) | set(b.params))
    snapshot_keys = ("n_cases", "labels_used", "last_label_id")
    top_a = [f["name"] for f in (a.metrics.get("top_features") or [])][:10]
    top_b = [f["name"] for f in (b.metrics.get("top_features") or [])][:10]
    n = max(len(top_a), len(top_b))
    return {
        "params": rows(a.params, b.params, param_keys),
        "metrics": rows(a.metrics, b.metrics, COMPARED_METRICS),
        "snapshot": rows(a.data_snapshot, b.data_snapshot, snapshot_keys),
        "top_features": [
            {
                "rank": i + 1,
                "a": top_a[i] if i < len(top_a) else "",
                "b": top_b[i] if i < len(top_b) else "",
            }
            for i in range(n)
        ],
    }
