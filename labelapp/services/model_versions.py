"""Model versions: artifacts written first, then the dataset's pointer flips; promote, roll back.

A version's folder holds ``model.txt`` (LightGBM's text format), ``feature_spec.json``,
``positives.parquet`` (the P the label-derived features were computed from), ``encoder.pt`` when
embeddings are used, ``knn_feature.npy`` when the model uses the kNN feature (every case's
value, row order), ``metrics.json``, ``params.json`` and ``scores.npy`` (every case's score,
row order: what promotion writes back into the database). Artifacts are written into a hidden
staging folder and renamed into place, so a folder under ``models/`` is always complete; the
database learns about it only after that, in the transaction that also flips
``Dataset.current_model``.
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

SCORE_WRITE_CHUNK = 200_000
# Every event that moves Dataset.current_model records {"from_version", "to_version"}.
CURRENT_FLIP_VERBS = ("model.current", "model.promote", "model.rollback")
ARTIFACT_FILES = ("model.txt", "feature_spec.json", "params.json", "metrics.json", "scores.npy")
#: The kNN feature of every case in row order (models trained with ``knn_feature`` on).
KNN_FILE = "knn_feature.npy"


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


def case_scores_write(*, dataset: Dataset, scores: np.ndarray, progress=None) -> None:
    """Write ``Case.score`` and ``score_percentile`` of every case (``scores`` in row order).

    PostgreSQL: ``COPY`` into a temporary table in chunks, then one ``UPDATE ... FROM``. Others:
    ``executemany`` in chunks. Call inside the transaction that must see them atomically.
    """
    scores = np.asarray(scores, dtype=np.float64)
    percentiles = score_percentiles(scores)
    rows = np.arange(len(scores), dtype=np.int64)
    table = Case._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS loop_scores "
                "(row integer PRIMARY KEY, score double precision, pct double precision) "
                "ON COMMIT DROP"
            )
            cursor.execute("TRUNCATE loop_scores")
            for start in range(0, len(scores), SCORE_WRITE_CHUNK):
                stop = min(start + SCORE_WRITE_CHUNK, len(scores))
                buffer = io.StringIO()
                pd.DataFrame(
                    {"row": rows[start:stop], "s": scores[start:stop], "p": percentiles[start:stop]}
                ).to_csv(buffer, sep="\t", header=False, index=False, float_format="%.17g")
                with cursor.copy("COPY loop_scores (row, score, pct) FROM STDIN") as copy:
                    copy.write(buffer.getvalue())
                if progress:
                    progress(stop // 2, len(scores))
            cursor.execute("ANALYZE loop_scores")
            cursor.execute(
                f"UPDATE {table} AS c SET score = t.score, score_percentile = t.pct "
                "FROM loop_scores AS t WHERE c.dataset_id = %s AND c.row = t.row",
                [dataset.pk],
            )
            if progress:
                progress(len(scores), len(scores))
        else:
            for start in range(0, len(scores), SCORE_WRITE_CHUNK):
                stop = min(start + SCORE_WRITE_CHUNK, len(scores))
                cursor.executemany(
                    f"UPDATE {table} SET score = %s, score_percentile = %s "
                    "WHERE dataset_id = %s AND row = %s",
                    [
                        (float(s), float(p), dataset.pk, int(r))
                        for s, p, r in zip(
                            scores[start:stop],
                            percentiles[start:stop],
                            rows[start:stop],
                            strict=True,
                        )
                    ],
                )
                if progress:
                    progress(stop, len(scores))


def model_version_scores(version: ModelVersion) -> np.ndarray:
    path = Path(version.artifact_dir) / "scores.npy"
    if not path.exists():
        raise ModelVersionError(f"model version {version.pk} has no stored scores at {path}")
    return np.load(path)


def model_version_promote(
    *, version: ModelVersion, user: Any = None, via: str = "page", verb: str = "model.promote"
) -> ModelVersion:
    """Make ``version`` its dataset's current model and write its scores back to the cases.

    One transaction: the cases' scores and the pointer change together or not at all.
    """
    dataset = version.dataset
    scores = model_version_scores(version)
    if len(scores) != dataset.n_cases:
        raise ModelVersionError(
            f"model version {version.pk} scored {len(scores)} cases, the dataset has "
            f"{dataset.n_cases}: it belongs to an earlier import"
        )
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        previous = locked.current_model_id
        case_scores_write(dataset=locked, scores=scores)
        Dataset.objects.filter(pk=dataset.pk).update(current_model=version)
        audit_event_create(
            actor=user,
            verb=verb,
            dataset=dataset,
            target=version,
            data={"from_version": previous, "to_version": version.pk},
            via=via,
        )
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
