"""The validation pass: stream every file once, collect ALL problems, and plan the write.

Nothing is written here. The result is an :class:`ImportReport` (empty when the data is clean)
and an :class:`ImportPlan`: the schema (given or inferred), each column's type in the snapshot,
and the counts the write pass needs.

Besides types and required values, the pass refuses what the database or the snapshot would keep
wrong or that could mislead a reader: infinite numbers (``inf``, ``1e309``) in a numeric column,
cells longer than :data:`MAX_CELL_CHARS`, ids longer than the database holds or with control,
invisible or bidirectional-text characters. Without ``schema.json`` the report says which type
each column was given, and warns about a column of numbers made categorical by a few words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from labelapp.importing import reader
from labelapp.importing.reader import CASES, EVENTS, SCHEMA, SourceFile
from labelapp.importing.report import MAX_ROWS_SHOWN, ImportReport

CASE_ID, ENTITY_ID, TS = "case_id", "entity_id", "ts"
SEED, LABEL, ROW = "seed_positive", "label", "row"
RESERVED_CASE_COLUMNS = (CASE_ID, ENTITY_ID, TS, SEED, LABEL, ROW)
RESERVED_EVENT_COLUMNS = (ENTITY_ID, TS)
FLAG_STRINGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
#: The longest value a cell may hold (an event's merchant name, a category).
MAX_CELL_CHARS = 10_000
#: ``case_id`` and ``entity_id``: as long as the database's columns.
MAX_ID_CHARS = 200
ID_COLUMNS = (CASE_ID, ENTITY_ID)
#: Characters refused in ids: C0/C1 controls, zero-width and invisible characters, line
#: separators, bidirectional-text controls (a right-to-left override makes "abc" look like "cba").
FORBIDDEN_ID_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
#: A column without a schema whose values are at least this share numbers, and that a few words
#: made categorical, gets a warning.
MOSTLY_NUMERIC = 0.9
#: Integers beyond this are stored as floats (int64 cannot hold them).
MAX_INT64 = 2**63 - 1

Progress = Callable[[str, int, int | None], None]


@dataclass
class ColumnPlan:
    """A feature column: its kind in the schema and its type in the snapshot."""

    name: str
    kind: str  # numeric | categorical | text
    dtype: str  # int64 | float64 | string


@dataclass
class TablePlan:
    source: SourceFile
    columns: list[str]
    features: list[ColumnPlan]
    n_rows: int = 0
    has_entity: bool = False
    has_ts: bool = False
    has_seed: bool = False
    has_label: bool = False


@dataclass
class ImportPlan:
    cases: TablePlan
    events: TablePlan | None
    schema: dict
    n_seed_positive: int = 0


@dataclass
class _ColumnStats:
    n_values: int = 0
    n_null: int = 0
    non_numeric: int = 0
    non_numeric_rows: list[int] = field(default_factory=list)
    non_finite: int = 0
    non_finite_rows: list[int] = field(default_factory=list)
    all_integral: bool = True
    #: False once non-numbers stopped being counted (the column is text, not mostly numbers).
    exact: bool = True

    def could_be_mostly_numeric(self) -> bool:
        present = self.n_values - self.n_null
        return self.non_numeric <= (1.0 - MOSTLY_NUMERIC) * max(present, 1)

    @property
    def numeric_share(self) -> float:
        present = self.n_values - self.n_null
        return (present - self.non_numeric) / present if present else 0.0


def _rows(mask: np.ndarray, start: int) -> list[int]:
    """1-based data row numbers of the first few True entries of ``mask``."""
    return [int(i) + start + 1 for i in np.flatnonzero(mask)[:MAX_ROWS_SHOWN]]


def _as_numeric(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    if pd.api.types.is_numeric_dtype(values):
        return values
    numbers = pd.to_numeric(values, errors="coerce")
    # pandas reads numbers beyond the float range ("1e309") as missing; they are infinite, and
    # are to be refused as such, not taken for words.
    missed = (numbers.isna() & values.notna()).to_numpy()
    if missed.any():
        numbers = numbers.astype("float64")
        numbers[missed] = values[missed].map(_infinity_or_nan).to_numpy(dtype="float64")
    return numbers


def _infinity_or_nan(value) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        return np.nan
    return number if np.isinf(number) else np.nan


def flag_values(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 0/1 column as int8, with masks of missing and of invalid (not 0/1) entries."""
    null = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64").to_numpy()
    else:
        mapped = values.astype("string").str.strip().str.lower().map(FLAG_STRINGS)
        numbers = pd.to_numeric(mapped, errors="coerce").to_numpy(dtype="float64")
    bad = ~null & ~np.isin(numbers, (0.0, 1.0))
    return np.where(null | bad, 0, numbers).astype("int8"), null, bad


def parse_times(values: pd.Series) -> pd.Series:
    """Times as UTC ``datetime64``; NaT where missing or not a time (ISO 8601 for text)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            return values.dt.tz_localize("UTC")
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")


def _update_stats(stats: _ColumnStats, values: pd.Series, start: int, track: bool) -> None:
    """Count values, nulls, non-numbers and infinite numbers. Once a column is known to be text
    (more than a few words), only nulls are counted, unless ``track`` (a column declared numeric,
    whose bad rows are reported)."""
    null = values.isna().to_numpy()
    if stats.non_numeric and not track and not stats.could_be_mostly_numeric():
        stats.n_values += len(values)
        stats.n_null += int(null.sum())
        stats.exact = False
        return
    numbers = _as_numeric(values)
    non_numeric = ~null & numbers.isna().to_numpy()
    stats.n_values += len(values)
    stats.n_null += int(null.sum())
    n_bad = int(non_numeric.sum())
    if n_bad:
        stats.non_numeric += n_bad
        stats.non_numeric_rows.extend(
            _rows(non_numeric, start)[: MAX_ROWS_SHOWN - len(stats.non_numeric_rows)]
        )
    floats = numbers.to_numpy(dtype="float64", na_value=np.nan)
    infinite = np.isinf(floats)
    if infinite.any():
        stats.non_finite += int(infinite.sum())
        stats.non_finite_rows.extend(
            _rows(infinite, start)[: MAX_ROWS_SHOWN - len(stats.non_finite_rows)]
        )
    if stats.all_integral and not n_bad:
        finite = floats[np.isfinite(floats)]
        stats.all_integral = bool(np.all(np.mod(finite, 1.0) == 0.0)) and bool(
            finite.size == 0 or np.abs(finite).max() < MAX_INT64
        )
    elif n_bad:
        stats.all_integral = False


def _schema_columns(
    schema: dict, table: str, kinds: tuple[str, ...], reserved: tuple[str, ...]
) -> dict[str, str] | None:
    """``{column: kind}`` declared for ``table`` in schema.json, or None when not declared.

    Reserved columns (``case_id``, ``ts``...) have fixed meanings; declaring them is harmless.
    """
    section = schema.get(table)
    if not isinstance(section, dict):
        return None
    declared: dict[str, str] = {}
    for kind in kinds:
        for column in section.get(kind, []) or []:
            if str(column) not in reserved:
                declared[str(column)] = kind
    return declared


class _Validator:
    def __init__(self, report: ImportReport, progress: Progress | None, chunk_rows: int):
        self.report = report
        self.progress = progress
        self.chunk_rows = chunk_rows

    # --- files ------------------------------------------------------------------------------
    def source_for(self, role: str, candidates: list[Path], required: bool) -> SourceFile | None:
        if not candidates:
            if required:
                self.report.add(
                    f"{role}.csv|{role}.parquet", "missing_file", f"no {role} file was given"
                )
            return None
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            self.report.add(candidates[0].name, "ambiguous_file", f"several {role} files: {names}")
            return None
        path = candidates[0]
        if path.stat().st_size == 0:
            self.report.add(path.name, "empty_file", "the file is empty")
            return None
        sniffed = reader.sniff(path)
        if sniffed.format is None:
            self.report.add(path.name, sniffed.code, sniffed.message)
            return None
        return SourceFile(role, path, sniffed.format, sniffed.compression)

    def load_schema(self, candidates: list[Path]) -> dict | None:
        if not candidates:
            return None
        try:
            schema = reader.read_schema(candidates[0])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.report.add(candidates[0].name, "invalid_schema", f"schema.json unreadable: {exc}")
            return None
        if not isinstance(schema, dict):
            self.report.add(candidates[0].name, "invalid_schema", "schema.json is not an object")
            return None
        return schema

    def columns_of(self, source: SourceFile) -> list[str] | None:
        try:
            return reader.read_columns(source)
        except Exception as exc:  # a file that parses as neither format
            self.report.add(source.name, "unreadable_file", f"cannot read the file: {exc}")
            return None

    def check_declared(
        self, source: SourceFile, features: list[str], declared: dict[str, str] | None
    ) -> None:
        if declared is None:
            return
        for column in features:
            if column not in declared:
                self.report.add(
                    source.name, "unknown_column", "column not in schema.json", column=column
                )
        for column in declared:
            if column not in features:
                self.report.add(
                    source.name, "missing_column", "schema.json column absent", column=column
                )

    # --- chunks -----------------------------------------------------------------------------
    def stream(self, source: SourceFile, stage: str):
        total = reader.count_rows_hint(source)
        start = 0
        try:
            for chunk in reader.iter_chunks(source, chunk_rows=self.chunk_rows):
                yield start, chunk
                start += len(chunk)
                if self.progress:
                    self.progress(stage, start, total)
        except UnicodeDecodeError as exc:  # the first bytes were UTF-8, later ones are not
            message = reader.not_utf8_message(exc.object, exc.start, from_start=False)
            after = f"after row {start}: " if start else ""
            self.report.add(source.name, "not_utf8", f"{after}{message}")
        except Exception as exc:  # a CSV that breaks mid-way, a corrupt Parquet page
            self.report.add(source.name, "unreadable_file", f"cannot read past row {start}: {exc}")

    def required_values(self, source: SourceFile, column: str, null: np.ndarray, start: int):
        if null.any():
            code = "missing_case_id" if column == CASE_ID else "nan_not_allowed"
            self.report.add(
                source.name,
                code,
                "empty value not allowed",
                column=column,
                rows=_rows(null, start),
                count=int(null.sum()),
            )

    def times(self, source: SourceFile, values: pd.Series, start: int) -> None:
        null = values.isna().to_numpy()
        self.required_values(source, TS, null, start)
        bad = ~null & parse_times(values).isna().to_numpy()
        if bad.any():
            self.report.add(
                source.name,
                "wrong_type",
                "not a time (expected ISO 8601)",
                column=TS,
                rows=_rows(bad, start),
                count=int(bad.sum()),
            )

    def flags(self, source: SourceFile, column: str, values: pd.Series, start: int) -> int:
        ones, null, bad = flag_values(values)
        self.required_values(source, column, null, start)
        if bad.any():
            self.report.add(
                source.name,
                "wrong_type",
                "expected 0 or 1",
                column=column,
                rows=_rows(bad, start),
                count=int(bad.sum()),
            )
        return int(ones.sum())

    def cells(self, source: SourceFile, chunk: pd.DataFrame, start: int) -> None:
        """Refuse values too long for any reader (an 8 MB cell is an accident, not data)."""
        for column in chunk.columns:
            too_long = _longer_than(chunk[column], MAX_CELL_CHARS)
            if too_long is not None and too_long.any():
                self.report.add(
                    source.name,
                    "cell_too_long",
                    f"value longer than {MAX_CELL_CHARS:,} characters",
                    column=str(column),
                    rows=_rows(too_long, start),
                    count=int(too_long.sum()),
                )

    def ids(self, source: SourceFile, column: str, values: pd.Series, start: int) -> None:
        """Ids are shown, searched and linked: short, and free of characters that hide or
        reorder text."""
        text = values.where(values.notna(), "").astype(str)  # missing ids are reported apart
        too_long = _longer_than(text, MAX_ID_CHARS)
        if too_long is not None and too_long.any():
            self.report.add(
                source.name,
                "id_too_long",
                f"id longer than {MAX_ID_CHARS} characters",
                column=column,
                rows=_rows(too_long, start),
                count=int(too_long.sum()),
            )
        bad = text.str.contains(FORBIDDEN_ID_CHARACTERS).to_numpy(dtype=bool)
        if bad.any():
            self.report.add(
                source.name,
                "bad_id_character",
                "control, invisible or bidirectional-text character (such as U+202E, the "
                "right-to-left override) in an id",
                column=column,
                rows=_rows(bad, start),
                count=int(bad.sum()),
            )

    def type_problems(
        self,
        source: SourceFile,
        table: str,
        stats: dict[str, _ColumnStats],
        declared: dict[str, str] | None,
        plans: list[ColumnPlan],
    ) -> None:
        """Wrong values of numeric columns; without a schema, the types given and warnings."""
        for plan in plans:
            s = stats[plan.name]
            if declared is not None and plan.kind == "numeric" and s.non_numeric:
                self.report.add(
                    source.name,
                    "wrong_type",
                    "not a number in a numeric column",
                    column=plan.name,
                    rows=s.non_numeric_rows,
                    count=s.non_numeric,
                )
            if plan.kind == "numeric" and s.non_finite:
                self.report.add(
                    source.name,
                    "not_finite",
                    "not a finite number (inf, -inf, or beyond the float range like 1e309) "
                    "in a numeric column",
                    column=plan.name,
                    rows=s.non_finite_rows,
                    count=s.non_finite,
                )
        if declared is not None or not plans:
            return
        self.report.inferred[table] = {plan.name: plan.kind for plan in plans}
        for plan in plans:
            s = stats[plan.name]
            mostly = s.exact and s.non_numeric and s.numeric_share >= MOSTLY_NUMERIC
            if plan.kind != "numeric" and mostly:
                self.report.warn(
                    source.name,
                    "mostly_numeric",
                    f"{s.numeric_share:.1%} of the values are numbers, but the values that are "
                    "not made the column categorical: fix them, or declare the column numeric "
                    "in schema.json to have them reported",
                    column=plan.name,
                    rows=s.non_numeric_rows,
                    count=s.non_numeric,
                )


def _longer_than(values: pd.Series, limit: int) -> np.ndarray | None:
    """Where a text column's values are longer than ``limit``; None for columns of no text."""
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return None
    try:
        lengths = values.str.len()
    except AttributeError:  # objects that are not text (Parquet lists, structs)
        return None
    return (lengths > limit).to_numpy(dtype=bool, na_value=False)


def _plan_features(
    columns: list[str], stats: dict[str, _ColumnStats], declared: dict[str, str] | None
) -> list[ColumnPlan]:
    plans = []
    for column in columns:
        s = stats[column]
        numeric_values = s.non_numeric == 0 and s.n_null < s.n_values
        kind = declared.get(column) if declared else None
        if kind is None:
            kind = "numeric" if numeric_values else "categorical"
        if kind == "numeric":
            dtype = "int64" if s.all_integral and s.n_null == 0 else "float64"
        elif kind == "categorical" and numeric_values and s.all_integral and s.n_null == 0:
            dtype = "int64"
        else:
            dtype = "string"
        plans.append(ColumnPlan(column, kind, dtype))
    return plans


def _duplicate_case_ids(source: SourceFile, positions: np.ndarray, hashes: np.ndarray, chunk_rows):
    """Rows (0-based) that repeat an earlier case_id: hashes find candidates, strings confirm."""
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    same = sorted_hashes[1:] == sorted_hashes[:-1]
    if not same.any():
        return np.empty(0, dtype=np.int64)
    candidate_hashes = set(sorted_hashes[1:][same].tolist())
    candidates = set(positions[np.isin(hashes, list(candidate_hashes))].tolist())
    seen: set[str] = set()
    repeats: list[int] = []
    start = 0
    for chunk in reader.iter_chunks(source, columns=[CASE_ID], chunk_rows=chunk_rows):
        ids = chunk[CASE_ID].astype(str).to_numpy()
        for i in range(len(ids)):
            if start + i in candidates:
                if ids[i] in seen:
                    repeats.append(start + i)
                seen.add(ids[i])
        start += len(ids)
    return np.asarray(repeats, dtype=np.int64)


def validate_dataset(
    *,
    source_dir: Path | None = None,
    files: Mapping[str, Path] | None = None,
    progress: Progress | None = None,
    chunk_rows: int = reader.CHUNK_ROWS,
) -> tuple[ImportReport, ImportPlan | None]:
    """Read every file once and report every problem; the plan is None when there are any."""
    report = ImportReport()
    v = _Validator(report, progress, chunk_rows)
    found = reader.find_files(source_dir, files)
    schema = v.load_schema(found[SCHEMA])
    cases_source = v.source_for(CASES, found[CASES], required=True)
    events_source = v.source_for(EVENTS, found[EVENTS], required=False)
    if cases_source is None:
        return report, None

    schema_given = schema or {}
    case_columns = v.columns_of(cases_source)
    if case_columns is None:
        return report, None
    case_features = [c for c in case_columns if c not in RESERVED_CASE_COLUMNS]
    case_declared = _schema_columns(
        schema_given, CASES, ("numeric", "categorical"), RESERVED_CASE_COLUMNS
    )
    if CASE_ID not in case_columns:
        report.add(cases_source.name, "missing_case_id", "no case_id column", column=CASE_ID)
    if (events_source is not None or found[EVENTS]) and ENTITY_ID not in case_columns:
        report.add(
            cases_source.name,
            "missing_column",
            "entity_id is needed to link events",
            column=ENTITY_ID,
        )
    v.check_declared(cases_source, case_features, case_declared)

    stats = {c: _ColumnStats() for c in case_features}
    hash_parts: list[np.ndarray] = []
    position_parts: list[np.ndarray] = []
    entities: set[str] = set()
    n_cases = n_seed = 0
    for start, chunk in v.stream(cases_source, "validating cases"):
        n_cases = start + len(chunk)
        v.cells(cases_source, chunk, start)
        for column in ID_COLUMNS:
            if column in chunk:
                v.ids(cases_source, column, chunk[column], start)
        if CASE_ID in chunk:
            ids = chunk[CASE_ID]
            null = ids.isna().to_numpy() | (ids.astype(str).str.strip() == "").to_numpy()
            v.required_values(cases_source, CASE_ID, null, start)
            keep = ~null
            hash_parts.append(
                pd.util.hash_pandas_object(ids[keep].astype(str), index=False).to_numpy()
            )
            position_parts.append(np.flatnonzero(keep) + start)
        if ENTITY_ID in chunk:
            ent = chunk[ENTITY_ID]
            v.required_values(cases_source, ENTITY_ID, ent.isna().to_numpy(), start)
            entities.update(ent.dropna().astype(str).unique().tolist())
        if TS in chunk:
            v.times(cases_source, chunk[TS], start)
        if SEED in chunk:
            n_seed += v.flags(cases_source, SEED, chunk[SEED], start)
        if LABEL in chunk:
            v.flags(cases_source, LABEL, chunk[LABEL], start)
        for column in case_features:
            track = bool(case_declared) and case_declared.get(column) == "numeric"
            _update_stats(stats[column], chunk[column], start, track)
    if n_cases == 0 and not any(p.code == "unreadable_file" for p in report.problems):
        report.add(cases_source.name, "empty_file", "the file has no rows")
    case_plans = _plan_features(case_features, stats, case_declared)
    v.type_problems(cases_source, CASES, stats, case_declared, case_plans)
    if hash_parts:
        repeats = _duplicate_case_ids(
            cases_source, np.concatenate(position_parts), np.concatenate(hash_parts), chunk_rows
        )
        if len(repeats):
            report.add(
                cases_source.name,
                "duplicate_case_id",
                "case_id already used by an earlier row",
                column=CASE_ID,
                rows=[int(r) + 1 for r in repeats[:MAX_ROWS_SHOWN]],
                count=len(repeats),
            )
    report.files[CASES] = {
        "name": cases_source.name,
        "format": cases_source.format,
        "rows": n_cases,
    }
    cases_plan = TablePlan(
        source=cases_source,
        columns=case_columns,
        features=case_plans,
        n_rows=n_cases,
        has_entity=ENTITY_ID in case_columns,
        has_ts=TS in case_columns,
        has_seed=SEED in case_columns,
        has_label=LABEL in case_columns,
    )

    events_plan = None
    if events_source is not None:
        events_plan = _validate_events(v, events_source, schema_given, entities)
    if not report.ok:
        return report, None

    final_schema = {
        CASES: {
            "numeric": [c.name for c in cases_plan.features if c.kind == "numeric"],
            "categorical": [c.name for c in cases_plan.features if c.kind == "categorical"],
        }
    }
    if events_plan is not None:
        final_schema[EVENTS] = {
            kind: [c.name for c in events_plan.features if c.kind == kind]
            for kind in ("numeric", "categorical", "text")
        }
    report.schema = final_schema
    return report, ImportPlan(cases_plan, events_plan, final_schema, n_seed_positive=n_seed)


def _validate_events(
    v: _Validator, source: SourceFile, schema: dict, entities: set[str]
) -> TablePlan | None:
    report = v.report
    columns = v.columns_of(source)
    if columns is None:
        return None
    for required in RESERVED_EVENT_COLUMNS:
        if required not in columns:
            report.add(source.name, "missing_column", f"events need {required}", column=required)
    features = [c for c in columns if c not in RESERVED_EVENT_COLUMNS]
    declared = _schema_columns(
        schema, EVENTS, ("numeric", "categorical", "text"), RESERVED_EVENT_COLUMNS
    )
    v.check_declared(source, features, declared)
    stats = {c: _ColumnStats() for c in features}
    n_rows = 0
    for start, chunk in v.stream(source, "validating events"):
        n_rows = start + len(chunk)
        v.cells(source, chunk, start)
        if ENTITY_ID in chunk:
            ent = chunk[ENTITY_ID]
            null = ent.isna().to_numpy()
            v.required_values(source, ENTITY_ID, null, start)
            unknown = ~null & ~ent.astype(str).isin(entities).to_numpy()
            if unknown.any():
                report.add(
                    source.name,
                    "unknown_entity",
                    "entity_id of no case",
                    column=ENTITY_ID,
                    rows=_rows(unknown, start),
                    count=int(unknown.sum()),
                )
        if TS in chunk:
            v.times(source, chunk[TS], start)
        for column in features:
            track = bool(declared) and declared.get(column) == "numeric"
            _update_stats(stats[column], chunk[column], start, track)
    if n_rows == 0 and not any(
        p.code == "unreadable_file" and p.file == source.name for p in report.problems
    ):
        report.add(source.name, "empty_file", "the file has no rows")
    plans = _plan_features(features, stats, declared)
    v.type_problems(source, EVENTS, stats, declared, plans)
    report.files[EVENTS] = {"name": source.name, "format": source.format, "rows": n_rows}
    return TablePlan(
        source=source,
        columns=columns,
        features=plans,
        n_rows=n_rows,
        has_entity=True,
        has_ts=True,
    )
