"""The scores lists and filters show: one ``CaseScore`` row per case of the shown version.

A version's scores (``scores.npy``, row order) are loaded in one transaction, ``COPY`` in binary
on PostgreSQL, which also moves ``Dataset.scores_model`` to the version: the new scores appear
all at once when it commits, and the case rows are never rewritten. The rows of the version
shown before stay for a quick rollback; older versions' rows are removed after the swap.
"""

from __future__ import annotations

import io

import numpy as np
from django.db import connection, transaction

from labelapp.models import Case, CaseScore, Dataset, ModelVersion

# Binary COPY of (row int4, score float8, percentile float8): a 3-field tuple header, then each
# field's byte length and its big-endian value.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("row_len", ">i4"),
        ("row", ">i4"),
        ("score_len", ">i4"),
        ("score", ">f8"),
        ("pct_len", ">i4"),
        ("pct", ">f8"),
    ]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"


def score_percentiles(scores: np.ndarray) -> np.ndarray:
    """Percentile rank (0-100] of each score among all; ties share the highest rank."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return scores
    order = np.sort(scores)
    return 100.0 * np.searchsorted(order, scores, side="right") / n


def case_scores_swap_in(*, dataset: Dataset, version: ModelVersion, scores: np.ndarray) -> bool:
    """Show ``version``'s ``scores`` (row order) in lists and filters; False if not current.

    One transaction: the dataset row is locked (one loader at a time; readers never wait), the
    version's rows are loaded unless already there, and ``scores_model`` moves to it. Afterwards
    the rows of versions neither shown now nor just before are removed.
    """
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if locked.current_model_id != version.pk:
            return False
        before = locked.scores_model_id
        if before != version.pk:
            if CaseScore.objects.filter(version=version).count() != len(scores):
                CaseScore.objects.filter(version=version).delete()
                _rows_load(dataset.pk, version.pk, np.asarray(scores, dtype=np.float64))
            Dataset.objects.filter(pk=dataset.pk).update(scores_model=version)
    case_scores_prune(dataset=dataset, keep=(version.pk, before))
    return True


def case_scores_prune(*, dataset: Dataset, keep: tuple[int | None, ...]) -> int:
    """Remove the dataset's score rows of every version but ``keep``; returns rows removed."""
    stale = dataset.model_versions.exclude(pk__in=[pk for pk in keep if pk is not None])
    removed, _ = CaseScore.objects.filter(version__in=stale).delete()
    return removed


def case_scores_remove(*, dataset: Dataset) -> None:
    """Every score row of the dataset (before its cases go)."""
    CaseScore.objects.filter(version__dataset=dataset).delete()


def _rows_load(dataset_id: int, version_id: int, scores: np.ndarray) -> None:
    """Insert one ``CaseScore`` row per case: row ``i`` of the dataset gets ``scores[i]``."""
    percentiles = score_percentiles(scores)
    score_table = CaseScore._meta.db_table
    case_table = Case._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS loaded_scores "
            "(row integer, score double precision, pct double precision)"
        )
        cursor.execute("DELETE FROM loaded_scores")
        if connection.vendor == "postgresql":
            with cursor.copy(
                "COPY loaded_scores (row, score, pct) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.write(_binary_copy(scores, percentiles))
        else:
            cursor.executemany(
                "INSERT INTO loaded_scores (row, score, pct) VALUES (%s, %s, %s)",
                list(zip(range(len(scores)), scores.tolist(), percentiles.tolist(), strict=True)),
            )
        cursor.execute(
            f"INSERT INTO {score_table} (version_id, case_id, score, percentile) "
            f"SELECT %s, c.id, t.score, t.pct FROM loaded_scores AS t "
            f"JOIN {case_table} AS c ON c.dataset_id = %s AND c.row = t.row",
            [version_id, dataset_id],
        )
        cursor.execute("DELETE FROM loaded_scores")


def _binary_copy(scores: np.ndarray, percentiles: np.ndarray) -> bytes:
    rows = np.empty(len(scores), dtype=_COPY_ROW)
    rows["fields"] = 3
    rows["row_len"] = 4
    rows["row"] = np.arange(len(scores))
    rows["score_len"] = 8
    rows["score"] = scores
    rows["pct_len"] = 8
    rows["pct"] = percentiles
    buffer = io.BytesIO()
    buffer.write(_COPY_HEADER)
    buffer.write(rows.tobytes())
    buffer.write(_COPY_TRAILER)
    return buffer.getvalue()
