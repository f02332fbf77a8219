"""A dataset folder made ``factor`` times larger: each copy with fresh identifiers, times kept.

Copy ``k`` of a case keeps every column and its ``ts``; its ``case_id``, ``entity_id`` and every
identifier column (categorical columns whose values are ids, e.g. ``terminal_id``) get the prefix
``k<k>-`` (copy 0 keeps the original ids). A copy's customers and terminals therefore see exactly
the original's histories: the per-entity features (``customer_nb_tx_7d``, ``terminal_nb_tx_30d``
...), the fraud patterns and the seed rule keep their meaning, and the copies never mix. Events are
copied the same way. Written with PyArrow one copy at a time (memory: about one copy's columns).

Pure PyArrow: no Django. ``python manage.py make_scaled_dataset`` is its command.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_COLUMNS = ("case_id", "entity_id")
ROW_GROUP = 250_000


def identifier_columns(schema: dict, table_name: str, columns: list[str]) -> list[str]:
    """The columns whose values are ids: ``case_id``, ``entity_id`` and the categorical columns
    named ``*_id``; low-cardinality categories (``hour``, ``is_night``) keep their values."""
    categorical = schema.get(table_name, {}).get("categorical", [])
    ids = [c for c in ID_COLUMNS if c in columns]
    return ids + [c for c in categorical if c.endswith("_id") and c in columns and c not in ids]


def _prefixed(table: pa.Table, columns: list[str], prefix: str) -> pa.Table:
    if not prefix:
        return table
    for name in columns:
        i = table.schema.get_field_index(name)
        values = pc.cast(table.column(name), pa.large_string())
        table = table.set_column(
            i,
            pa.field(name, pa.large_string()),
            pc.binary_join_element_wise(
                pa.scalar(prefix, pa.large_string()), values, pa.scalar("", pa.large_string())
            ),
        )
    return table


def _copy_table(
    src: Path, dst: Path, factor: int, id_columns: list[str], log: Callable[[str], None]
) -> int:
    table = pq.read_table(src)
    if any(table.schema.field(c).type != pa.large_string() for c in id_columns):
        table = table.cast(
            pa.schema(
                [
                    pa.field(f.name, pa.large_string()) if f.name in id_columns else f
                    for f in table.schema
                ]
            )
        )
    rows = 0
    with pq.ParquetWriter(dst, table.schema) as writer:
        for k in range(factor):
            copy = _prefixed(table, id_columns, f"k{k}-" if k else "")
            writer.write_table(copy, row_group_size=ROW_GROUP)
            rows += copy.num_rows
            log(f"  {dst.name}: copy {k + 1}/{factor} ({rows:,} rows)")
    return rows


def make_scaled_dataset(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    factor: int,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``out_dir`` with ``factor`` copies of ``data_dir``'s cases (and events).

    Returns
    -------
    dict
        ``{"cases": n, "events": n or 0, "factor": factor}``.
    """
    if factor < 1:
        raise ValueError("factor must be at least 1")
    src, out = Path(data_dir), Path(out_dir)
    cases_src = src / "cases.parquet"
    if not cases_src.exists():
        raise FileNotFoundError(f"{cases_src} not found: a dataset folder with cases.parquet")
    if out.resolve() == src.resolve():
        raise ValueError("--out must be another folder than --data")
    out.mkdir(parents=True, exist_ok=True)
    schema_path = src / "schema.json"
    schema = json.loads(schema_path.read_text()) if schema_path.exists() else {}
    if schema_path.exists():
        shutil.copyfile(schema_path, out / "schema.json")
    result = {"factor": factor, "cases": 0, "events": 0}
    for table in ("cases", "events"):
        path = src / f"{table}.parquet"
        if path.exists():
            columns = pq.read_schema(path).names
            result[table] = _copy_table(
                path,
                out / f"{table}.parquet",
                factor,
                identifier_columns(schema, table, columns),
                log,
            )
    return result
