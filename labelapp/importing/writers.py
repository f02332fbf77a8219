"""The write pass: typed frames per chunk, into the database (COPY or bulk_create) and into the
columnar snapshot (``cases.parquet`` with ``row``, ``events.parquet``, ``schema.json``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.db import connection

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

    def write_cases(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self.case_schema, preserve_index=False)
        self.cases.write_table(table)

    def write_events(self, frame: pd.DataFrame) -> None:
        assert self.events is not None
        table = pa.Table.from_pandas(frame, schema=self.event_schema, preserve_index=False)
        self.events.write_table(table)

    def close(self, schema: dict) -> None:
        self.cases.close()
        if self.events is not None:
            self.events.close()
        (self.folder / "schema.json").write_text(json.dumps(schema, indent=2))


def features_json(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """One JSON object per row with the given columns (NaN as null)."""
    if not columns:
        return ["{}"] * len(frame)
    text = frame[columns].to_json(orient="records", lines=True, double_precision=10)
    return text.rstrip("\n").split("\n")


def _copy(table: str, columns: list[str], frame: pd.DataFrame, force_not_null: list[str]) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_MINIMAL)
    qn = connection.ops.quote_name
    sql = (
        f"COPY {qn(table)} ({', '.join(qn(c) for c in columns)}) FROM STDIN "
        f"(FORMAT csv, FORCE_NOT_NULL ({', '.join(qn(c) for c in force_not_null)}))"
    )
    with connection.cursor() as cursor, cursor.copy(sql) as copy:
        copy.write(buffer.getvalue())


def insert_cases(dataset_id: int, frame: pd.DataFrame, feature_columns: list[str]) -> None:
    """Insert a typed chunk of cases: ``COPY`` on PostgreSQL, ``bulk_create`` elsewhere."""
    features = features_json(frame, feature_columns)
    seed = frame[SEED].to_numpy() == 1
    pool = np.where(seed, PoolState.POSITIVE.value, PoolState.UNLABELED.value)
    ts = frame[TS] if TS in frame else pd.Series(pd.NaT, index=frame.index)
    if connection.vendor == "postgresql":
        rows = pd.DataFrame(
            {
                "dataset_id": dataset_id,
                "row": frame[ROW].to_numpy(),
                "case_id": frame[CASE_ID].to_numpy(),
                "entity_id": frame[ENTITY_ID].to_numpy(),
                "ts": ts.to_numpy(),
                "seed_positive": seed.astype(np.int8),
                "pool_state": pool,
                "features": features,
            }
        )
        _copy(Case._meta.db_table, list(rows.columns), rows, ["case_id", "entity_id"])
        return
    times = _aware_or_none(ts)
    Case.objects.bulk_create(
        [
            Case(
                dataset_id=dataset_id,
                row=int(r),
                case_id=c,
                entity_id=e,
                ts=t,
                seed_positive=bool(s),
                pool_state=p,
                features=json.loads(f),
            )
            for r, c, e, t, s, p, f in zip(
                frame[ROW],
                frame[CASE_ID],
                frame[ENTITY_ID],
                times,
                seed,
                pool,
                features,
                strict=True,
            )
        ],
        batch_size=SQLITE_BATCH,
    )


def insert_events(dataset_id: int, frame: pd.DataFrame, field_columns: list[str]) -> None:
    fields = features_json(frame, field_columns)
    if connection.vendor == "postgresql":
        rows = pd.DataFrame(
            {
                "dataset_id": dataset_id,
                "entity_id": frame[ENTITY_ID].to_numpy(),
                "ts": frame[TS].to_numpy(),
                "fields": fields,
            }
        )
        _copy(Event._meta.db_table, list(rows.columns), rows, ["entity_id"])
        return
    Event.objects.bulk_create(
        [
            Event(dataset_id=dataset_id, entity_id=e, ts=t, fields=json.loads(f))
            for e, t, f in zip(frame[ENTITY_ID], _aware_or_none(frame[TS]), fields, strict=True)
        ],
        batch_size=SQLITE_BATCH,
    )


def _aware_or_none(values: pd.Series) -> list:
    aware = pd.to_datetime(values).dt.tz_localize("UTC")
    return [None if pd.isna(t) else t.to_pydatetime() for t in aware]
