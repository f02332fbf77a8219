"""Reading a dataset folder and building model features, including label-derived entity features.

A dataset folder (SPEC "Dataset format") holds ``cases.parquet|csv``, optional
``events.parquet|csv`` and optional ``schema.json``. :func:`load_dataset` reads it into a
:class:`Dataset` whose categorical columns are integer codes (``-1`` for missing), ready for
LightGBM. :func:`label_derived_features` counts known positives (P) that share a categorical value
(a terminal, a customer) in trailing time windows before each case: the fraud-team habit of
"how many frauds did this merchant have last week", computed from P only, never from the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

RESERVED_COLUMNS = ("case_id", "entity_id", "ts", "seed_positive", "label", "row")
# A categorical column with more levels than this is an identifier (a terminal, a merchant): it
# feeds label-derived features rather than the trees directly, where it would only memorise.
MAX_CATEGORICAL_LEVELS = 256


def as_datetime(values: pd.Series) -> pd.Series:
    """``pd.to_datetime(values)``, without its cost where they already are datetimes.

    On a datetime Series pandas still builds Timestamps of a first chunk (10,000 of them) to
    decide whether to cache: 28 ms for every call, most of a case page's feature row.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values)


@dataclass
class Dataset:
    """A dataset folder read into memory.

    Attributes
    ----------
    name : str
        The folder's name.
    cases : DataFrame, shape (n_cases, n_columns)
        The cases in file order; categorical columns (schema) are replaced by int32 codes, -1 for
        missing. ``ts`` stays a datetime column.
    numeric_columns, categorical_columns : list of str
        Feature columns by kind, from ``schema.json`` or inferred from dtypes.
    categories : dict of str to Index
        For each encoded column (categoricals and ``entity_id``), the value of each code.
    labels : ndarray of int8, shape (n_cases,) or None
        Ground truth, for the benchmark's simulated expert only.
    seed_positive : ndarray of bool, shape (n_cases,) or None
    ts : ndarray of datetime64[ns], shape (n_cases,) or None
    events_path : Path or None
        Where the events file lies (read on demand, it can be large).
    schema : dict
    """

    name: str
    cases: pd.DataFrame
    numeric_columns: list[str]
    categorical_columns: list[str]
    categories: dict[str, pd.Index] = field(default_factory=dict)
    labels: np.ndarray | None = None
    seed_positive: np.ndarray | None = None
    ts: np.ndarray | None = None
    events_path: Path | None = None
    schema: dict = field(default_factory=dict)

    @property
    def n_cases(self) -> int:
        return len(self.cases)

    def identifier_columns(self, max_levels: int = MAX_CATEGORICAL_LEVELS) -> list[str]:
        """Categorical columns with more than ``max_levels`` levels, plus ``entity_id``."""
        ids = [c for c in self.categorical_columns if len(self.categories[c]) > max_levels]
        if "entity_id" in self.cases.columns and "entity_id" not in ids:
            ids.append("entity_id")
        return ids

    def feature_frame(self, max_levels: int = MAX_CATEGORICAL_LEVELS) -> pd.DataFrame:
        """Hand features for the trees: numeric columns as float32, low-cardinality codes.

        Returns
        -------
        DataFrame, shape (n_cases, n_features)
            Identifier-like categoricals (see :meth:`identifier_columns`) are left out.
        """
        ids = set(self.identifier_columns(max_levels))
        out = {c: self.cases[c].to_numpy(dtype=np.float32) for c in self.numeric_columns}
        for c in self.categorical_columns:
            if c not in ids:
                out[c] = self.cases[c].to_numpy(dtype=np.int32)
        return pd.DataFrame(out, index=self.cases.index)

    def raw_cases(self) -> pd.DataFrame:
        """The cases with every encoded column decoded back to its values (missing: None)."""
        raw = self.cases.copy()
        for col, categories in self.categories.items():
            codes = raw[col].to_numpy()
            values = np.asarray(categories, dtype=object)[np.maximum(codes, 0)]
            values[codes < 0] = None
            raw[col] = values
        return raw

    def low_cardinality_categoricals(self, max_levels: int = MAX_CATEGORICAL_LEVELS) -> list[str]:
        ids = set(self.identifier_columns(max_levels))
        return [c for c in self.categorical_columns if c not in ids]


def _read_table(folder: Path, stem: str) -> pd.DataFrame | None:
    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = folder / f"{stem}{suffix}"
        if path.exists():
            return reader(path)
    return None


def _infer_schema(cases: pd.DataFrame) -> dict:
    numeric, categorical = [], []
    for col in cases.columns:
        if col in RESERVED_COLUMNS:
            continue
        if pd.api.types.is_bool_dtype(cases[col]) or not pd.api.types.is_numeric_dtype(cases[col]):
            categorical.append(col)
        else:
            numeric.append(col)
    return {"cases": {"numeric": numeric, "categorical": categorical}}


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset folder.

    Parameters
    ----------
    path : str or Path
        Folder with ``cases.parquet`` or ``cases.csv``, optional ``schema.json`` and events.

    Returns
    -------
    Dataset
    """
    folder = Path(path)
    cases = _read_table(folder, "cases")
    if cases is None:
        raise FileNotFoundError(f"no cases.parquet or cases.csv in {folder}")
    schema_path = folder / "schema.json"
    schema = json.loads(schema_path.read_text()) if schema_path.exists() else _infer_schema(cases)
    events_path = next(
        (folder / f"events{s}" for s in (".parquet", ".csv") if (folder / f"events{s}").exists()),
        None,
    )
    return dataset_from_frame(folder.name, cases, schema, events_path=events_path)


def dataset_from_frame(
    name: str, cases: pd.DataFrame, schema: dict, *, events_path: Path | None = None
) -> Dataset:
    """A :class:`Dataset` from raw cases (categorical values, not codes) and their schema.

    The same as :func:`load_dataset` on a folder holding ``cases`` and ``schema``: categories
    are those of these cases, so a subset (the benchmark's pool) is encoded as the app encodes
    that subset once imported.
    """
    numeric, categorical = _columns_by_kind(cases, schema)
    cases = cases.copy()
    categories: dict[str, pd.Index] = {}
    for col in _encoded_columns(cases, categorical):
        codes, uniques = pd.factorize(cases[col], sort=True)
        cases[col] = codes.astype(np.int32)
        categories[col] = pd.Index(uniques)
    ts = None
    if "ts" in cases.columns:
        cases["ts"] = as_datetime(cases["ts"])
        ts = cases["ts"].to_numpy(dtype="datetime64[ns]")
    labels = cases["label"].to_numpy(dtype=np.int8) if "label" in cases.columns else None
    seeds = cases["seed_positive"].to_numpy().astype(bool) if "seed_positive" in cases else None
    return Dataset(
        name=name,
        cases=cases,
        numeric_columns=numeric,
        categorical_columns=categorical,
        categories=categories,
        labels=labels,
        seed_positive=seeds,
        ts=ts,
        events_path=events_path,
        schema=schema,
    )


def dataset_header(
    name: str, cases: pd.DataFrame, schema: dict | None = None, *, events_path: Path | None = None
) -> Dataset:
    """What :func:`dataset_from_frame` would say of the raw ``cases``, without encoding them.

    The returned :class:`Dataset` has the same columns by kind, categories (the sorted distinct
    values of each categorical, as ``pd.factorize(sort=True)`` finds them) and ``ts`` presence,
    but ``cases`` holds no rows: enough for :meth:`learning.featurespec.FeatureSpec.from_dataset`
    on a pool too large to copy (the app's iteration keeps one copy of its cases in memory).
    """
    schema = schema or _infer_schema(cases)
    numeric, categorical = _columns_by_kind(cases, schema)
    categories: dict[str, pd.Index] = {}
    for col in _encoded_columns(cases, categorical):
        _, uniques = pd.factorize(pd.unique(cases[col]), sort=True)
        categories[col] = pd.Index(uniques)
    ts = as_datetime(cases["ts"]).to_numpy(dtype="datetime64[ns]") if "ts" in cases else None
    return Dataset(
        name=name,
        cases=cases.iloc[:0],
        numeric_columns=numeric,
        categorical_columns=categorical,
        categories=categories,
        ts=ts,
        events_path=events_path,
        schema=schema,
    )


def _columns_by_kind(cases: pd.DataFrame, schema: dict) -> tuple[list[str], list[str]]:
    """The schema's numeric and categorical case columns that ``cases`` holds."""
    case_schema = schema.get("cases", {})
    numeric = [c for c in case_schema.get("numeric", []) if c in cases.columns]
    categorical = [c for c in case_schema.get("categorical", []) if c in cases.columns]
    return numeric, categorical


def _encoded_columns(cases: pd.DataFrame, categorical: list[str]) -> list[str]:
    """Columns replaced by integer codes: the categoricals and ``entity_id``."""
    return [c for c in [*categorical, "entity_id"] if c in cases.columns]


def label_derived_features(
    cases: pd.DataFrame,
    positive_mask: np.ndarray,
    *,
    columns: list[str] | tuple[str, ...],
    windows_days: list[float] | tuple[float, ...] = (1, 7, 28),
    ts_column: str = "ts",
    cache: dict | None = None,
) -> pd.DataFrame:
    """Count known positives sharing each case's value in trailing windows before its time.

    For column ``c`` and window ``w``, feature ``p_<c>_<w>d`` of case ``i`` is the number of cases
    ``j`` with ``positive_mask[j]``, ``c[j] == c[i]`` and ``ts[i] - w <= ts[j] < ts[i]``. Strictly
    before: a positive never counts itself, so the feature carries no label of its own case.

    Parameters
    ----------
    cases : DataFrame, shape (n_cases, ...)
        Must hold ``ts_column`` (datetime) and every column in ``columns`` (integer codes or any
        hashable values).
    positive_mask : array-like of bool, shape (n_cases,)
        Known positives (P: seeds and confirmed cases), never the ground truth.
    columns : sequence of str
    windows_days : sequence of float
    cache : dict, optional
        Pass the same dict on every call over the same ``cases`` (a loop recomputing the
        features as P grows): the sort of the cases, which does not depend on P, is kept there.

    Returns
    -------
    DataFrame, shape (n_cases, len(columns) * len(windows_days))
        float32 counts, index aligned to ``cases``.
    """
    positive_mask = np.asarray(positive_mask, dtype=bool)
    if positive_mask.shape != (len(cases),):
        raise ValueError("positive_mask must have one entry per case")
    cache = {} if cache is None else cache
    if "seconds" not in cache:
        seconds = as_datetime(cases[ts_column]).to_numpy(dtype="datetime64[s]").astype(np.int64)
        cache["seconds"] = seconds - seconds.min() if len(seconds) else seconds
    seconds = cache["seconds"]
    # Keys of different values must not overlap even after subtracting the longest window.
    longest = int(max(windows_days, default=0) * 86400)
    span = (int(seconds.max()) if len(seconds) else 0) + longest + 1
    out: dict[str, np.ndarray] = {}
    for col in columns:
        if ("key", col, longest) not in cache:
            values = cases[col].to_numpy()
            if not np.issubdtype(values.dtype, np.integer):
                values = pd.factorize(values)[0]
            # One sortable key per (value, time): value * span + seconds. Counting positives in
            # a window is then two binary searches per case, fully vectorised. Sorted queries
            # make searchsorted sequential in memory (much faster on a million cases); shifting
            # by a window keeps them sorted.
            key = values.astype(np.int64) * span + seconds
            order = np.argsort(key, kind="stable")
            cache[("key", col, longest)] = (key, order, key[order])
        key, order, sorted_key = cache[("key", col, longest)]
        positive_keys = np.sort(key[positive_mask])
        upper = np.searchsorted(positive_keys, sorted_key, side="left")
        for w in windows_days:
            lower = np.searchsorted(positive_keys, sorted_key - int(w * 86400), side="left")
            counts = np.empty(len(key), dtype=np.float32)
            counts[order] = upper - lower
            out[f"p_{col}_{w:g}d"] = counts
    return pd.DataFrame(out, index=cases.index)


def entity_deviation_features(
    cases: pd.DataFrame,
    columns: list[str] | tuple[str, ...],
    *,
    entity_column: str = "entity_id",
    ts_column: str = "ts",
) -> pd.DataFrame:
    """How far each case's numeric values stand from its entity's own earlier cases.

    Feature ``dev_<c>`` of case ``i`` is ``c[i]`` divided by the mean of ``c`` over the cases of
    the same entity strictly before ``ts[i]`` (NaN for an entity's first case, or where that mean
    is not positive). "Amount five times what this customer usually spends" is what fraud teams
    compute by hand; it uses no label, only the case table. Cases with the same entity and the
    same ``ts`` do not see each other.

    Parameters
    ----------
    cases : DataFrame, shape (n_cases, ...)
        Must hold ``entity_column``, ``ts_column`` and every column in ``columns``.
    columns : sequence of str
        Numeric case columns.

    Returns
    -------
    DataFrame, shape (n_cases, len(columns))
        float32, index aligned to ``cases``.
    """
    n = len(cases)
    entity = cases[entity_column].to_numpy()
    if not np.issubdtype(entity.dtype, np.integer):
        entity = pd.factorize(entity)[0]
    ts = as_datetime(cases[ts_column]).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts, entity))
    entity_s, ts_s = entity[order], ts[order]
    # A run is a block of cases with the same entity and the same ts; a group, one entity.
    new_group = np.r_[True, entity_s[1:] != entity_s[:-1]] if n else np.zeros(0, bool)
    new_run = new_group | np.r_[True, ts_s[1:] != ts_s[:-1]] if n else np.zeros(0, bool)
    group_start = np.flatnonzero(new_group)[np.cumsum(new_group) - 1]
    run_start = np.flatnonzero(new_run)[np.cumsum(new_run) - 1]
    out: dict[str, np.ndarray] = {}
    for col in columns:
        values = cases[col].to_numpy(dtype=np.float64)[order]
        finite = np.isfinite(values)
        csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
        ccount = np.concatenate([[0], np.cumsum(finite)])
        # Sums over the entity's cases before the current run (earlier ts only).
        before_sum = csum[run_start] - csum[group_start]
        before_n = ccount[run_start] - ccount[group_start]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = before_sum / before_n
            ratio = np.where((before_n > 0) & (mean > 0), values / mean, np.nan)
        feature = np.empty(n, dtype=np.float32)
        feature[order] = ratio
        out[f"dev_{col}"] = feature
    return pd.DataFrame(out, index=cases.index)
