"""Model versions: artifacts written first, then the dataset's pointer flips; promote, roll back.

A version's folder holds ``model.txt`` (LightGBM's text format), ``feature_spec.json``,
``positives.parquet`` (the P the label-derived features were computed from), ``encoder.pt`` when
embeddings are used, ``knn_feature.npy`` when the model uses the kNN feature (every case's
value, row order), ``metrics.json``, ``params.json`` and ``scores.npy`` (every case's score,
row order: what promotion writes back into the database). Artifacts are written into a hidden
staging folder and renamed into place, so a folder under ``models/`` is always complete; the
database learns about it only after that, in the short transaction that also flips
``Dataset.current_model``. ``Case.score`` is a copy of the current version's ``scores.npy`` for
lists and filters: written after the flip in chunks of ``LOOP_SCORE_WRITE_ROWS`` rows, one
transaction each, tracked by ``Dataset.scores_model``/``scores_synced_rows`` so that a killed
worker's copy is finished later (:func:`case_scores_sync_pending`). While it runs, rows past
``scores_synced_rows`` still show the previous version's score.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction

from labelapp.models import AuditEvent, Case, Dataset, ModelVersion
from labelapp.services.audit import audit_event_create

SCORE_WRITE_CHUNK = 50_000  # rows of Case.score per transaction (``LOOP_SCORE_WRITE_ROWS``)
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


def score_percentiles(scores: np.ndarray) -> np.ndarray:
    """Percentile rank (0-100] of each score among all; ties share the highest rank."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return scores
    order = np.sort(scores)
    return 100.0 * np.searchsorted(order, scores, side="right") / n


def score_write_rows() -> int:
    return int(getattr(settings, "LOOP_SCORE_WRITE_ROWS", 0)) or SCORE_WRITE_CHUNK


def model_pointer_flip(*, dataset_id: int, version: ModelVersion) -> int | None:
    """Make ``version`` current; returns the previous current version's id.

    Call inside the transaction that must flip it. Light: two rows. ``Case.score`` follows in
    chunks afterwards (:func:`case_scores_sync`).
    """
    locked = Dataset.objects.select_for_update().get(pk=dataset_id)
    previous = locked.current_model_id
    Dataset.objects.filter(pk=dataset_id).update(
        current_model=version, scores_model=version, scores_synced_rows=0
    )
    return previous


def case_scores_sync(*, dataset: Dataset, progress=None) -> bool:
    """Copy the current model's ``scores.npy`` into ``Case.score`` and ``score_percentile``.

    ``score_write_rows()`` rows per transaction, resuming after the rows already written
    (``Dataset.scores_synced_rows``), so no transaction holds many row locks and a run killed
    half way is finished by the next call. Each chunk is written only while the version is still
    current; returns False (and stops) when the pointer moved meanwhile, True when all rows
    hold the current version's scores.
    """
    dataset.refresh_from_db(fields=["current_model", "scores_model", "scores_synced_rows"])
    version = dataset.current_model
    if version is None:
        return True
    start = dataset.scores_synced_rows if dataset.scores_model_id == version.pk else 0
    if start >= dataset.n_cases and dataset.scores_model_id == version.pk:
        return True
    scores = np.asarray(model_version_scores(version), dtype=np.float64)
    percentiles = score_percentiles(scores)
    chunk = score_write_rows()
    for a in range(start, len(scores), chunk):
        b = min(a + chunk, len(scores))
        with transaction.atomic():
            still_current = Dataset.objects.filter(pk=dataset.pk, current_model=version).update(
                scores_model=version, scores_synced_rows=b
            )
            if not still_current:
                return False
            _case_scores_write_rows(dataset.pk, a, scores[a:b], percentiles[a:b])
        if progress:
            progress(b, len(scores))
    if len(scores) == 0:
        Dataset.objects.filter(pk=dataset.pk, current_model=version).update(scores_model=version)
    return True


def _case_scores_write_rows(
    dataset_id: int, start: int, scores: np.ndarray, percentiles: np.ndarray
) -> None:
    """``Case.score``/``score_percentile`` of rows ``start:start+len(scores)`` (one chunk).

    PostgreSQL: ``COPY`` into a temporary table, then one ``UPDATE ... FROM``. Others:
    ``executemany``. Writing a chunk twice writes the same values.
    """
    rows = np.arange(start, start + len(scores), dtype=np.int64)
    table = Case._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS loop_scores "
                "(row integer PRIMARY KEY, score double precision, pct double precision) "
                "ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE loop_scores")  # when an outer transaction keeps it alive
            buffer = io.StringIO()
            pd.DataFrame({"row": rows, "s": scores, "p": percentiles}).to_csv(
                buffer, sep="\t", header=False, index=False, float_format="%.17g"
            )
            with cursor.copy("COPY loop_scores (row, score, pct) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
            cursor.execute(
                f"UPDATE {table} AS c SET score = t.score, score_percentile = t.pct "
                "FROM loop_scores AS t WHERE c.dataset_id = %s AND c.row = t.row",
                [dataset_id],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET score = %s, score_percentile = %s "
                "WHERE dataset_id = %s AND row = %s",
                [
                    (float(s), float(p), dataset_id, int(r))
                    for s, p, r in zip(scores, percentiles, rows, strict=True)
                ],
            )


def case_scores_sync_pending() -> int:
    """Finish the ``Case.score`` copies a killed worker left half done; returns how many."""
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

    The pointer flips in one short transaction; ``Case.score`` follows in chunks
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
