"""The scores lists and filters show: one ``CaseScore`` row per case of the shown version.

A version's scores (``scores.npy``, row order) are loaded in one transaction that also moves
``Dataset.scores_model`` to the version: the new scores appear all at once when it commits, and
the case rows are never rewritten. On PostgreSQL each version's rows are a partition of their
own (binary ``COPY`` into a fresh table, indexes built once, then attached), so that a version
no longer needed is dropped whole instead of deleted row by row. The rows of the version shown
before stay for a quick rollback; older versions' rows go after the swap.
"""

from __future__ import annotations

import io

import numpy as np
from django.db import OperationalError, connection, transaction

from labelapp.models import Case, CaseScore, Dataset, ModelVersion

# Binary COPY of (version_id int8, case_id int8, score float8, percentile float8): a 4-field
# tuple header, then each field's byte length and its big-endian value.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("version_len", ">i4"),
        ("version", ">i8"),
        ("case_len", ">i4"),
        ("case", ">i8"),
        ("score_len", ">i4"),
        ("score", ">f8"),
        ("pct_len", ">i4"),
        ("pct", ">f8"),
    ]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
# A version's partition is dropped (or attached) only if its lock comes within this long: the
# drop is retried at the next swap rather than queueing the explorer's reads behind it.
_DDL_LOCK_TIMEOUT = "5s"


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
    scores = np.asarray(scores, dtype=np.float64)
    case_ids = _case_ids_by_row(dataset)
    if len(case_ids) != len(scores):
        raise ValueError(f"{len(scores)} scores for the {len(case_ids)} cases of {dataset}")
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if locked.current_model_id != version.pk:
            return False
        before = locked.scores_model_id
        if before != version.pk:
            _rows_store(version.pk, case_ids, scores)
            Dataset.objects.filter(pk=dataset.pk).update(scores_model=version)
    case_scores_prune(dataset=dataset, keep=(version.pk, before))
    return True


def case_scores_store(*, dataset: Dataset, version: ModelVersion, scores: np.ndarray) -> None:
    """Write ``version``'s score rows (row order) unless there; shows nothing by itself."""
    scores = np.asarray(scores, dtype=np.float64)
    with transaction.atomic():
        _rows_store(version.pk, _case_ids_by_row(dataset), scores)


def _rows_store(version_id: int, case_ids: np.ndarray, scores: np.ndarray) -> None:
    if CaseScore.objects.filter(version_id=version_id).count() != len(scores):
        _rows_remove(version_id)
        _rows_load(version_id, case_ids, scores)


def case_scores_prune(*, dataset: Dataset, keep: tuple[int | None, ...]) -> int:
    """Remove the dataset's score rows of every version but ``keep``; returns versions cleared."""
    kept = [pk for pk in keep if pk is not None]
    stale = set(dataset.model_versions.exclude(pk__in=kept).values_list("pk", flat=True))
    stale &= _versions_with_rows(stale)
    for version_id in sorted(stale):
        _rows_remove(version_id, wait=False)
    return len(stale)


def case_scores_remove(*, dataset: Dataset) -> None:
    """Every score row of the dataset (before its cases go)."""
    for version_id in dataset.model_versions.values_list("pk", flat=True):
        _rows_remove(version_id)
    CaseScore.objects.filter(case__dataset=dataset).delete()


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _partition(version_id: int) -> str:
    return f"{CaseScore._meta.db_table}_v{int(version_id)}"


def _versions_with_rows(candidates: set[int]) -> set[int]:
    if not candidates:
        return set()
    if not _postgres():
        found = CaseScore.objects.filter(version_id__in=candidates).values_list("version_id")
        return {pk for (pk,) in found.distinct()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [CaseScore._meta.db_table],
        )
        attached = {name for (name,) in cursor.fetchall()}
    return {pk for pk in candidates if _partition(pk) in attached}


def _rows_remove(version_id: int, *, wait: bool = True) -> None:
    """PostgreSQL: drop the version's partition (skipped if its lock does not come, unless
    ``wait``). Elsewhere: delete its rows."""
    if not _postgres():
        CaseScore.objects.filter(version_id=version_id).delete()
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if not wait:
                cursor.execute(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'")
            cursor.execute(f"DROP TABLE IF EXISTS {_partition(version_id)}")
    except OperationalError:
        if wait:
            raise


def _rows_load(version_id: int, case_ids: np.ndarray, scores: np.ndarray) -> None:
    """One ``CaseScore`` row per case: ``case_ids[i]`` gets ``scores[i]``.

    PostgreSQL: a new table takes the rows by binary ``COPY``, gets its indexes built at once
    (faster than growing them row by row) and a check that tells PostgreSQL every row belongs
    to the version, then is attached as the version's partition without a scan.
    """
    percentiles = score_percentiles(scores)
    if not _postgres():
        CaseScore.objects.bulk_create(
            (
                CaseScore(version_id=version_id, case_id=int(c), score=s, percentile=p)
                for c, s, p in zip(case_ids, scores.tolist(), percentiles.tolist(), strict=True)
            ),
            batch_size=5000,
        )
        return
    parent, table = CaseScore._meta.db_table, _partition(version_id)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(
            f"CREATE TABLE {table} (LIKE {parent} INCLUDING DEFAULTS, "
            f"CONSTRAINT {table}_version CHECK (version_id = {int(version_id)}))"
        )
        binary = f"COPY {table} (version_id, case_id, score, percentile) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(binary) as copy:
            copy.write(_binary_copy(version_id, case_ids, scores, percentiles))
        cursor.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (version_id, case_id)")
        cursor.execute(f"CREATE INDEX ON {table} (version_id, score DESC NULLS LAST, case_id DESC)")
        cursor.execute(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'")
        cursor.execute(
            f"ALTER TABLE {parent} ATTACH PARTITION {table} FOR VALUES IN ({int(version_id)})"
        )
        cursor.execute("SET LOCAL lock_timeout = 0")
        cursor.execute(f"ANALYZE {table}")  # the planner's row counts for the explorer's joins


def _case_ids_by_row(dataset: Dataset) -> np.ndarray:
    """``Case.id`` of every row of the dataset, in row order."""
    ids = np.zeros(dataset.n_cases, dtype=np.int64)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT row, id FROM {Case._meta.db_table} WHERE dataset_id = %s", [dataset.pk]
        )
        while chunk := cursor.fetchmany(200_000):
            pairs = np.asarray(chunk, dtype=np.int64)
            ids[pairs[:, 0]] = pairs[:, 1]
    return ids


def _binary_copy(
    version_id: int, case_ids: np.ndarray, scores: np.ndarray, percentiles: np.ndarray
) -> bytes:
    rows = np.empty(len(scores), dtype=_COPY_ROW)
    rows["fields"] = 4
    rows["version_len"] = rows["case_len"] = rows["score_len"] = rows["pct_len"] = 8
    rows["version"] = version_id
    rows["case"] = case_ids
    rows["score"] = scores
    rows["pct"] = percentiles
    buffer = io.BytesIO()
    buffer.write(_COPY_HEADER)
    buffer.write(rows.tobytes())
    buffer.write(_COPY_TRAILER)
    return buffer.getvalue()
