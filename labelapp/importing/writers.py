"""The write pass: typed frames per chunk, into the database (COPY or bulk_create) and into the
columnar snapshot (``cases.parquet`` with ``row``, ``events.parquet``, ``schema.json``)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from django.db import connection
from psycopg.copy import QueuedLibpqWriter

from labelapp.importing.validation import (
    CASE_ID,
    ENTITY_ID,
    LABEL,
    ROW,
    SEED,
    TS,
    ColumnPlan,
    TablePlan,
    flag_values,
    parse_times,
)
from labelapp.models import Case, Event, PoolState

SQLITE_BATCH = 2_000
ARROW_TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}


def _typed(values: pd.Series, plan: ColumnPlan) -> pd.Series:
    if plan.dtype == "string":
        return values.astype("string")
    numbers = pd.to_numeric(values, errors="coerce") if values.dtype == object else values
    return numbers.astype(plan.dtype)


def _naive_utc(values: pd.Series) -> pd.Series:
    return parse_times(values).dt.tz_convert(None)


def typed_cases(chunk: pd.DataFrame, plan: TablePlan, start: int) -> pd.DataFrame:
    """A validated chunk of cases in snapshot types, with ``row`` = position in the file."""
    n = len(chunk)
    out = {
        ROW: np.arange(start, start + n, dtype=np.int64),
        CASE_ID: chunk[CASE_ID].astype(str).to_numpy(dtype=object),
        ENTITY_ID: (
            chunk[ENTITY_ID].astype(str).to_numpy(dtype=object)
            if plan.has_entity
            else np.full(n, "", dtype=object)
        ),
    }
    if plan.has_ts:
        out[TS] = _naive_utc(chunk[TS]).to_numpy()
    out[SEED] = (
        flag_values(chunk[SEED])[0].astype(np.int64) if plan.has_seed else np.zeros(n, np.int64)
    )
    if plan.has_label:
        out[LABEL] = flag_values(chunk[LABEL])[0].astype(np.int64)
    frame = pd.DataFrame(out)
    for column in plan.features:
        frame[column.name] = _typed(chunk[column.name], column).to_numpy()
    return frame


def typed_events(chunk: pd.DataFrame, plan: TablePlan) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            ENTITY_ID: chunk[ENTITY_ID].astype(str).to_numpy(dtype=object),
            TS: _naive_utc(chunk[TS]).to_numpy(),
        }
    )
    for column in plan.features:
        frame[column.name] = _typed(chunk[column.name], column).to_numpy()
    return frame


def arrow_schema(plan: TablePlan, *, cases: bool) -> pa.Schema:
    fields = []
    if cases:
        fields += [(ROW, pa.int64()), (CASE_ID, pa.string()), (ENTITY_ID, pa.string())]
        if plan.has_ts:
            fields.append((TS, pa.timestamp("ns")))
        fields.append((SEED, pa.int64()))
        if plan.has_label:
            fields.append((LABEL, pa.int64()))
    else:
        fields += [(ENTITY_ID, pa.string()), (TS, pa.timestamp("ns"))]
    fields += [(c.name, ARROW_TYPES[c.dtype]) for c in plan.features]
    return pa.schema(fields)


class SnapshotWriter:
    """Appends typed chunks to ``<dir>/cases.parquet`` and ``<dir>/events.parquet``."""

    def __init__(self, folder: Path, cases: TablePlan, events: TablePlan | None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.case_schema = arrow_schema(cases, cases=True)
        self.cases = pq.ParquetWriter(folder / "cases.parquet", self.case_schema)
        self.event_schema = arrow_schema(events, cases=False) if events else None
        self.events = (
            pq.ParquetWriter(folder / "events.parquet", self.event_schema) if events else None
        )

    def case_table(self, frame: pd.DataFrame) -> pa.Table:
        return pa.Table.from_pandas(frame, schema=self.case_schema, preserve_index=False)

    def event_table(self, frame: pd.DataFrame) -> pa.Table:
        return pa.Table.from_pandas(frame, schema=self.event_schema, preserve_index=False)

    def write_cases(self, table: pa.Table) -> None:
        self.cases.write_table(table)

    def write_events(self, table: pa.Table) -> None:
        assert self.events is not None
        self.events.write_table(table)

    def close(self, schema: dict) -> None:
        self.cases.close()
        if self.events is not None:
            self.events.close()
        (self.folder / "schema.json").write_text(json.dumps(schema, indent=2))


def _json_values(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each value as JSON text (null for missing, NaN and infinities)."""
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return pc.fill_null(pc.cast(column, pa.string()), "null")
    text = pc.cast(column, pa.string())
    if pc.any(pc.match_substring_regex(text, r"[\x00-\x1f]")).as_py():
        quoted = pa.array([None if v is None else json.dumps(v) for v in text.to_pylist()])
    else:
        escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), '"', '\\"')
        quoted = pc.binary_join_element_wise('"', escaped, '"', "")
    return pc.fill_null(quoted, "null")


def features_json(table: pa.Table, columns: list[str]) -> pa.ChunkedArray:
    """One JSON object per row with the given columns, built column-wise by Arrow kernels."""
    if not columns:
        return pa.chunked_array([pa.array(["{}"] * table.num_rows, pa.string())])
    parts: list = []
    for i, name in enumerate(columns):
        parts += [("{" if i == 0 else ",") + json.dumps(name) + ":", _json_values(table[name])]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


@contextmanager
def _copy_stream(table_name: str, columns: list[str], force_not_null: list[str]):
    """One ``COPY table FROM STDIN`` for a whole file; yields ``send(arrow_table)``.

    Chunks are written as CSV by Arrow's C++ writer and handed to a sender thread
    (``QueuedLibpqWriter``), so PostgreSQL parses chunk k while Python prepares chunk k+1.
    """
    qn = connection.ops.quote_name
    sql = (
        f"COPY {qn(table_name)} ({', '.join(qn(c) for c in columns)}) FROM STDIN "
        f"(FORMAT csv, FORCE_NOT_NULL ({', '.join(qn(c) for c in force_not_null)}))"
    )
    options = pcsv.WriteOptions(include_header=False)
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(sql, writer=QueuedLibpqWriter(raw)) as copy:

            def send(rows: pa.Table) -> None:
                buffer = io.BytesIO()
                pcsv.write_csv(rows.select(columns), buffer, options)
                copy.write(buffer.getvalue())

            yield send


CASE_COLUMNS = [
    "dataset_id",
    "row",
    "case_id",
    "entity_id",
    "ts",
    "seed_positive",
    "pool_state",
    "features",
]
EVENT_COLUMNS = ["dataset_id", "entity_id", "ts", "fields"]


def _case_rows(dataset_id: int, table: pa.Table, feature_columns: list[str]) -> pa.Table:
    """The cases table's columns for a typed chunk: pool state P for seed positives, else U."""
    n = table.num_rows
    seed = pc.equal(table[SEED], 1)
    return pa.table(
        {
            "dataset_id": pa.array(np.full(n, dataset_id, dtype=np.int64)),
            "row": table[ROW],
            "case_id": table[CASE_ID],
            "entity_id": table[ENTITY_ID],
            "ts": table[TS] if TS in table.column_names else pa.nulls(n, pa.timestamp("ns")),
            "seed_positive": seed,
            "pool_state": pc.if_else(seed, PoolState.POSITIVE.value, PoolState.UNLABELED.value),
            "features": features_json(table, feature_columns),
        }
    )


def _event_rows(dataset_id: int, table: pa.Table, field_columns: list[str]) -> pa.Table:
    return pa.table(
        {
            "dataset_id": pa.array(np.full(table.num_rows, dataset_id, dtype=np.int64)),
            "entity_id": table[ENTITY_ID],
            "ts": table[TS],
            "fields": features_json(table, field_columns),
        }
    )


def _bulk_create(model, rows: pa.Table, json_column: str) -> None:
    """Portable path (SQLite): ORM objects in batches."""
    objects = []
    for row in rows.to_pylist():
        row[json_column] = json.loads(row[json_column])
        row["ts"] = _aware(row["ts"])
        objects.append(model(**row))
    model.objects.bulk_create(objects, batch_size=SQLITE_BATCH)


@contextmanager
def case_inserter(dataset_id: int, feature_columns: list[str]) -> Iterator[Callable]:
    """Yields ``insert(typed_case_table)``: ``COPY`` on PostgreSQL, ``bulk_create`` elsewhere."""
    if connection.vendor == "postgresql":
        with _copy_stream(Case._meta.db_table, CASE_COLUMNS, ["case_id", "entity_id"]) as send:
            yield lambda table: send(_case_rows(dataset_id, table, feature_columns))
    else:
        yield lambda table: _bulk_create(
            Case, _case_rows(dataset_id, table, feature_columns), "features"
        )


@contextmanager
def event_inserter(dataset_id: int, field_columns: list[str]) -> Iterator[Callable]:
    if connection.vendor == "postgresql":
        with _copy_stream(Event._meta.db_table, EVENT_COLUMNS, ["entity_id"]) as send:
            yield lambda table: send(_event_rows(dataset_id, table, field_columns))
    else:
        yield lambda table: _bulk_create(
            Event, _event_rows(dataset_id, table, field_columns), "fields"
        )


def _aware(value):
    """Arrow gives naive UTC datetimes (or pandas Timestamps for ns); Django wants aware ones."""
    if value is None:
        return None
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()
