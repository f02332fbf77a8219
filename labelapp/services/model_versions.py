"""Model versions: artifacts written first, then the dataset's pointer flips; promote, roll back.

A version's folder holds ``model.txt`` (LightGBM's text format), ``feature_spec.json``,
``positives.parquet`` (the P the label-derived features were computed from), ``encoder.pt`` when
embeddings are used, ``knn_feature.npy`` when the model uses the kNN feature (every case's
value, row order), ``metrics.json``, ``params.json`` and ``scores.npy`` (every case's score,
row order: what promotion writes back into the database). Artifacts are written into a hidden
staging folder and renamed into place, so a folder under ``models/`` is always complete; the
database learns about it only after that, in the short transaction that also flips
``Dataset.current_model``. Lists and filters show the scores of ``Dataset.scores_model``, rows of
``CaseScore`` loaded from ``scores.npy`` after the flip in one transaction that also moves
``scores_model`` (:mod:`labelapp.services.case_scores`); a killed worker's load is redone later
(:func:`case_scores_sync_pending`). Until then lists show the previous version's scores.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from labelapp.models import AuditEvent, Dataset, ModelVersion
from labelapp.services.audit import audit_event_create
from labelapp.services.case_scores import case_scores_swap_in

# Every event that moves Dataset.current_model records {"from_version", "to_version"}.
CURRENT_FLIP_VERBS = ("model.current", "model.promote", "model.rollback")
ARTIFACT_FILES = ("model.txt", "feature_spec.json", "params.json", "metrics.json", "scores.npy")


class ModelVersionError(Exception):
    pass


def models_root(dataset: Dataset) -> Path:
    return Path(settings.ARTIFACTS_DIR) / "models" / str(dataset.pk)


def staging_dir_create(dataset: Dataset, iteration_id: int) -> Path:
    """A fresh hidden folder for one attempt's artifacts (never read as a model version)."""
    path = models_root(dataset) / f".staging-{iteration_id}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def artifacts_publish(staging: Path) -> Path:
    """Rename a complete staging folder into place; returns the final folder."""
    missing = [name for name in ARTIFACT_FILES if not (staging / name).exists()]
    if missing:
        raise ModelVersionError(f"artifacts incomplete, missing {missing}")
    final = staging.parent / staging.name.removeprefix(".staging-")
    staging.rename(final)  # atomic on one filesystem
    return final


def json_write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def model_pointer_flip(*, dataset_id: int, version: ModelVersion) -> int | None:
    """Make ``version`` current; returns the previous current version's id.

    Call inside the transaction that must flip it. Light: one row. The scores lists show
    follow once the version's score rows are loaded (:func:`case_scores_sync`).
    """
    locked = Dataset.objects.select_for_update().get(pk=dataset_id)
    previous = locked.current_model_id
    Dataset.objects.filter(pk=dataset_id).update(current_model=version)
    return previous


def case_scores_sync(*, dataset: Dataset) -> bool:
    """Make lists and filters show the current version's scores (load its rows, swap them in).

    True when they show them; False when the pointer moved on meanwhile (the newer version's
    own sync follows). Safe to call twice: a version already shown costs one query.
    """
    dataset.refresh_from_db(fields=["current_model", "scores_model"])
    version = dataset.current_model
    if version is None or dataset.scores_model_id == version.pk:
        return True
    return case_scores_swap_in(
        dataset=dataset, version=version, scores=model_version_scores(version)
    )


def case_scores_sync_pending() -> int:
    """Show the current version's scores where a killed worker left that undone; how many."""
    n = 0
    for dataset in Dataset.objects.exclude(current_model=None):
        if dataset.case_scores_pending:
            n += bool(case_scores_sync(dataset=dataset))
    return n


def model_version_scores(version: ModelVersion) -> np.ndarray:
    path = Path(version.artifact_dir) / "scores.npy"
    if not path.exists():
        raise ModelVersionError(f"model version {version.pk} has no stored scores at {path}")
    return np.load(path)


def model_version_promote(
    *, version: ModelVersion, user: Any = None, via: str = "page", verb: str = "model.promote"
) -> ModelVersion:
    """Make ``version`` its dataset's current model, then write its scores back to the cases.

    The pointer flips in one short transaction; the scores lists show follow in a second one
    (:func:`case_scores_sync`).
    """
    dataset = version.dataset
    scores = model_version_scores(version)
    if len(scores) != dataset.n_cases:
        raise ModelVersionError(
            f"model version {version.pk} scored {len(scores)} cases, the dataset has "
            f"{dataset.n_cases}: it belongs to an earlier import"
        )
    with transaction.atomic():
        previous = model_pointer_flip(dataset_id=dataset.pk, version=version)
        audit_event_create(
            actor=user,
            verb=verb,
            dataset=dataset,
            target=version,
            data={"from_version": previous, "to_version": version.pk},
            via=via,
        )
    case_scores_sync(dataset=dataset)
    dataset.refresh_from_db()
    return version


def model_version_rollback(
    *, dataset: Dataset, user: Any = None, via: str = "page"
) -> ModelVersion:
    """Return to the version that was current before the current one (else its parent)."""
    current = dataset.current_model
    if current is None:
        raise ModelVersionError("there is no current model to roll back from")
    previous = previous_current_version(dataset)
    if previous is None:
        raise ModelVersionError("there is no earlier model version to roll back to")
    return model_version_promote(version=previous, user=user, via=via, verb="model.rollback")


def previous_current_version(dataset: Dataset) -> ModelVersion | None:
    """The version the pointer last moved away from to reach the current one."""
    current_id = dataset.current_model_id
    flips = AuditEvent.objects.filter(
        dataset=dataset, verb__in=CURRENT_FLIP_VERBS, data__to_version=current_id
    ).order_by("-created_at", "-id")
    for flip in flips:
        from_id = flip.data.get("from_version")
        if from_id and from_id != current_id:
            found = ModelVersion.objects.filter(pk=from_id, dataset=dataset).first()
            if found is not None:
                return found
    current = dataset.current_model
    return current.parent if current is not None else None


def staging_dirs_remove(dataset: Dataset, iteration_id: int) -> None:
    """Remove the half-written staging folders of an iteration's attempt (after a failure)."""
    root = models_root(dataset)
    if root.exists():
        for path in root.glob(f".staging-{iteration_id}-*"):
            shutil.rmtree(path, ignore_errors=True)
