"""Model versions built by the real pipeline, with batches answered by an expert (the truth)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labelapp.models import Dataset, Iteration, Label, ModelVersion
from labelapp.services.iterations import iteration_params_clean
from labelapp.services.labels import label_create
from labelapp.services.pipeline import iteration_execute

FAST = {"batch_size": 20, "n_clusters": 4, "pool_size": 100, "n_estimators": 30}


def loop_in_process(settings, tmp_path: Path) -> None:
    """Settings for running the pipeline in the test process on a shared 2-core machine."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"  # models apart from the dev database's
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0


def run_iteration(dataset: Dataset, **params) -> ModelVersion:
    """One iteration run in-process; returns the version it made (now current)."""
    iteration = Iteration.objects.create(
        dataset=dataset,
        number=dataset.iterations.count() + 1,
        params=iteration_params_clean({**FAST, **params}, dataset=dataset),
    )
    result = iteration_execute(iteration_id=iteration.pk)
    iteration.refresh_from_db()
    assert result["status"] == "done", iteration.log + iteration.error
    return iteration.model_version


def answer_batch(version: ModelVersion, cases: pd.DataFrame, user, *, limit=None) -> list[Label]:
    """The expert answers ``version``'s batch (the first ``limit`` items) by the true label."""
    truth = cases.set_index("case_id")["label"]
    items = version.iteration.batch.select_related("case").order_by("position")
    labels = []
    for item in list(items)[:limit]:
        answer = "confirmed" if truth[item.case.case_id] else "not_confirmed"
        labels.append(label_create(user=user, case=item.case, answer=answer))
    return labels
