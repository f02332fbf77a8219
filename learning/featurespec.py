"""The feature specification of a model: how raw cases become the matrix the model scores.

A :class:`FeatureSpec` is stored beside every model (``feature_spec.json``). The app's scoring and
the export bundle's standalone scorer both call :func:`build_matrix` with it, so one set of raw
cases always gives the same matrix, hence the same scores, inside and outside the app.

Columns of the matrix, in order (``FeatureSpec.feature_names``):

1. numeric case columns, as float32 (missing stays NaN);
2. low-cardinality categorical case columns, as integer codes of the training-time categories
   (unknown or missing values become -1, which LightGBM reads as missing);
3. entity-deviation features ``dev_<column>``: a numeric column's value divided by the mean of
   the same entity's earlier cases *among the cases given* (see
   :func:`learning.features.entity_deviation_features`); callers scoring new cases pass the
   entity's earlier cases with them, as they pass events for embeddings;
4. label-derived entity features ``p_<column>_<w>d``: how many known positives (the P the model
   was trained with, stored as ``positives.parquet``) shared the case's value of ``column`` in the
   ``w`` days strictly before the case's ``ts``
   (see :func:`learning.features.label_derived_features`);
5. behavior-sequence embeddings ``emb_0 .. emb_{d-1}`` when the model uses an encoder;
6. ``knn_positive_share`` when the model was trained with the kNN feature
   (:mod:`learning.knn_feature`): read from the cases like a numeric column, because it depends
   on the whole pool the app indexed, which the model does not carry (the caller supplies it).

A spec without entity-deviation or kNN features is written as version 1, one with either as
version 2, so scorers that predate them keep reading the specs they can score and refuse the
others by version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learning.features import (
    Dataset,
    as_datetime,
    entity_deviation_features,
    label_derived_features,
)
from learning.knn_feature import KNN_FEATURE

SPEC_VERSION = 3  # the newest version this code reads
DEFAULT_WINDOWS_DAYS = (1.0, 7.0, 28.0)
# A model folder's entity-deviation columns of every training case (n_cases, n_deviation), for
# scoring a dataset in chunks or one case at a time.
DEVIATION_FILE = "deviation.npy"


@dataclass
class FeatureSpec:
    """Everything needed to rebuild a model's feature matrix from raw cases.

    Attributes
    ----------
    numeric_columns : list of str
    categorical_columns : dict of str to list
        For each categorical column fed to the trees, its training-time categories in code order
        (code ``i`` is ``categories[i]``). Numeric-looking categories are stored as numbers.
    deviation_columns : list of str
        Numeric columns whose entity-deviation feature joins the matrix; empty when cases have
        no ``ts`` or no ``entity_column`` (and in specs written before the feature existed).
    entity_column : str
    label_derived_columns : list of str
        Case columns (identifiers such as a terminal or the customer) whose label-derived counts
        join the features; empty when cases have no ``ts``.
    label_derived_windows_days : list of float
    embedding_dim : int
        Width of the encoder's vector (what :func:`build_matrix` is given); 0 when the model
        uses no embeddings.
    embedding_columns : list of int or None
        The positions in the encoder's vector that the model uses (its ``emb_<position>``
        columns), e.g. only the case's own-event columns; None: all ``embedding_dim``.
    sequence_length : int or None
        The encoder's maximum sequence length (for the standalone scorer), when embeddings are used.
    ts_column : str
    knn_neighbors : int
        ``k`` of the kNN feature (:data:`learning.knn_feature.KNN_FEATURE`), 0 when unused.
    """

    numeric_columns: list[str] = field(default_factory=list)
    categorical_columns: dict[str, list[Any]] = field(default_factory=dict)
    deviation_columns: list[str] = field(default_factory=list)
    entity_column: str = "entity_id"
    label_derived_columns: list[str] = field(default_factory=list)
    label_derived_windows_days: list[float] = field(
        default_factory=lambda: list(DEFAULT_WINDOWS_DAYS)
    )
    embedding_dim: int = 0
    sequence_length: int | None = None
    ts_column: str = "ts"
    knn_neighbors: int = 0
    embedding_columns: list[int] | None = None

    # -- derived -----------------------------------------------------------------------------
    @property
    def deviation_names(self) -> list[str]:
        return [f"dev_{col}" for col in self.deviation_columns]

    @property
    def label_derived_names(self) -> list[str]:
        return [
            f"p_{col}_{w:g}d"
            for col in self.label_derived_columns
            for w in self.label_derived_windows_days
        ]

    @property
    def knn_names(self) -> list[str]:
        return [KNN_FEATURE] if self.knn_neighbors else []

    @property
    def used_embedding_columns(self) -> list[int]:
        """Positions in the encoder's vector that become model columns (empty without
        embeddings)."""
        if not self.embedding_dim:
            return []
        if self.embedding_columns is None:
            return list(range(self.embedding_dim))
        return list(self.embedding_columns)

    @property
    def version(self) -> int:
        """Format version: 3 when the model uses a subset of the encoder's columns, 2 when the
        spec uses entity-deviation or kNN features, else 1."""
        if self.embedding_columns is not None:
            return 3
        return 2 if (self.knn_neighbors or self.deviation_columns) else 1

    @property
    def feature_names(self) -> list[str]:
        """Column names of :func:`build_matrix`'s output, in order."""
        return [
            *self.numeric_columns,
            *self.categorical_columns,
            *self.deviation_names,
            *self.label_derived_names,
            *(f"emb_{i}" for i in self.used_embedding_columns),
            *self.knn_names,
        ]

    @property
    def categorical_indices(self) -> list[int]:
        """Positions of the categorical columns in the matrix (for LightGBM)."""
        start = len(self.numeric_columns)
        return list(range(start, start + len(self.categorical_columns)))

    @property
    def positive_columns(self) -> list[str]:
        """Columns of the positives frame that :func:`build_matrix` needs."""
        if not self.label_derived_columns:
            return []
        return [self.ts_column, *self.label_derived_columns]

    @property
    def raw_columns(self) -> list[str]:
        """Case columns :func:`build_matrix` reads."""
        cols = [
            *self.numeric_columns,
            *self.categorical_columns,
            *self.positive_columns,
            *self.knn_names,
        ]
        if self.deviation_columns:
            cols += [self.entity_column, self.ts_column, *self.deviation_columns]
        return list(dict.fromkeys(cols))

    def missing_columns_message(self, columns) -> str | None:
        """Why cases with ``columns`` cannot be scored, or None when none of ours is missing."""
        missing = [c for c in self.raw_columns if c not in set(columns)]
        if not missing:
            return None
        text = f"cases lack columns the model needs: {', '.join(missing)}"
        if KNN_FEATURE in missing:
            text += (
                f" ({KNN_FEATURE}: this model was trained with the kNN feature; supply each "
                f"case's share of known positives among its {self.knn_neighbors} nearest "
                "neighbours, as computed by the app that trained it)"
            )
        return text

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        label_derived: bool = True,
        entity_deviation: bool = True,
        windows_days: tuple[float, ...] | list[float] = DEFAULT_WINDOWS_DAYS,
        embedding_dim: int = 0,
        sequence_length: int | None = None,
        embedding_columns: list[int] | None = None,
    ) -> FeatureSpec:
        """The spec of a dataset read by :func:`learning.features.load_dataset`.

        Identifier-like categoricals (many levels) and ``entity_id`` feed the label-derived
        features instead of the trees; the rest of the categoricals keep their categories.
        """
        identifiers = dataset.identifier_columns()
        categorical = {
            col: [_json_value(v) for v in dataset.categories[col]]
            for col in dataset.low_cardinality_categoricals()
        }
        has_ts = dataset.ts is not None
        has_entity = has_ts and "entity_id" in dataset.cases.columns
        return cls(
            numeric_columns=list(dataset.numeric_columns),
            categorical_columns=categorical,
            deviation_columns=list(dataset.numeric_columns)
            if entity_deviation and has_entity
            else [],
            label_derived_columns=list(identifiers) if (label_derived and has_ts) else [],
            label_derived_windows_days=[float(w) for w in windows_days],
            embedding_dim=int(embedding_dim),
            sequence_length=sequence_length,
            embedding_columns=_checked_columns(embedding_columns, int(embedding_dim)),
        )

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        data = {**asdict(self), "version": self.version}
        if self.embedding_columns is None:  # readable by scorers that predate version 3
            del data["embedding_columns"]
        if self.version == 1:  # readable by scorers that predate the version 2 features
            for key in ("knn_neighbors", "deviation_columns", "entity_column"):
                del data[key]
        # Not sort_keys: the order of categorical_columns is the order of the matrix's columns.
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        version = data.pop("version", 1)
        if version > SPEC_VERSION:
            raise ValueError(f"feature spec version {version} is newer than this code's")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureSpec:
        return cls.from_json(Path(path).read_text())


def _json_value(value: Any) -> Any:
    """A category as a JSON-native value (NumPy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _category_keys(values: pd.Series | pd.Index | list) -> pd.Index:
    """Comparable keys: numbers (and booleans) as float64, everything else as str.

    ``1``, ``1.0`` and ``True`` are one category whether a file stored them as int, float or
    bool, so CSV and Parquet copies of the same cases map to the same codes.
    """
    series = pd.Series(values)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return pd.Index(series.astype(np.float64))
    numeric = pd.to_numeric(series, errors="coerce")
    if len(series) and numeric.notna().all():
        return pd.Index(numeric.astype(np.float64))
    return pd.Index(series.astype(str).where(series.notna(), None))


def encode_categorical(values: pd.Series, categories: list[Any]) -> np.ndarray:
    """Codes of ``values`` in ``categories`` (shape (n,) int32; -1 for unknown or missing)."""
    codes = _category_keys(categories).get_indexer(_category_keys(values))
    codes = np.asarray(codes, dtype=np.int32)
    codes[pd.isna(values.to_numpy())] = -1
    return codes


def _checked_columns(columns: list[int] | None, width: int) -> list[int] | None:
    """``columns`` as a list of distinct positions inside the encoder's vector of ``width``."""
    if columns is None or not width:
        return None
    columns = [int(c) for c in columns]
    inside = bool(columns) and 0 <= min(columns) and max(columns) < width
    if not inside or len(set(columns)) != len(columns):
        raise ValueError(f"embedding columns must be distinct positions in 0..{width - 1}")
    return columns


def embedding_indices(spec: FeatureSpec) -> list[int]:
    """Positions of the embedding columns ``emb_*`` in the matrix (empty without embeddings)."""
    used = spec.used_embedding_columns
    if not used:
        return []
    start = spec.feature_names.index(f"emb_{used[0]}")
    return list(range(start, start + len(used)))


def build_matrix(
    spec: FeatureSpec,
    cases: pd.DataFrame,
    *,
    positives: pd.DataFrame | None = None,
    embeddings: np.ndarray | None = None,
    deviation: np.ndarray | None = None,
) -> np.ndarray:
    """The model's feature matrix for ``cases``.

    Parameters
    ----------
    spec : FeatureSpec
    cases : DataFrame, shape (n_cases, ...)
        Raw cases as in a dataset folder's ``cases`` file (categorical values, not codes); must
        hold every column of ``spec.raw_columns``.
    positives : DataFrame, shape (n_positives, ...), optional
        The known positives the model was trained with: ``spec.positive_columns`` (``ts`` and
        the label-derived columns, raw values). Required when the spec has label-derived
        features; no positives at all is an empty frame.
    embeddings : ndarray, shape (n_cases, spec.embedding_dim), optional
        Rows aligned with ``cases``; required when ``spec.embedding_dim > 0``.
    deviation : ndarray, shape (n_cases, len(spec.deviation_columns)), optional
        Entity-deviation features computed beforehand over a larger set of cases (a chunk of a
        dataset scored apart from the entities' earlier cases); default: computed from ``cases``.

    ``cases`` also holds ``knn_positive_share`` when ``spec.knn_neighbors > 0``.

    Returns
    -------
    ndarray of float32, shape (n_cases, len(spec.feature_names))
    """
    message = spec.missing_columns_message(cases.columns)
    if message:
        raise ValueError(message)
    n = len(cases)
    X = np.empty((n, len(spec.feature_names)), dtype=np.float32)
    col = 0
    for name in spec.numeric_columns:
        X[:, col] = pd.to_numeric(cases[name], errors="coerce").to_numpy(dtype=np.float32)
        col += 1
    for name, categories in spec.categorical_columns.items():
        X[:, col] = encode_categorical(cases[name], categories)
        col += 1
    if spec.deviation_columns:
        if deviation is None:
            deviation = deviation_matrix(spec, cases)
        if deviation.shape != (n, len(spec.deviation_columns)):
            raise ValueError(f"deviation features have shape {deviation.shape}")
        X[:, col : col + deviation.shape[1]] = deviation
        col += deviation.shape[1]
    if spec.label_derived_columns:
        derived = _label_derived(spec, cases, positives)
        X[:, col : col + derived.shape[1]] = derived
        col += derived.shape[1]
    if spec.embedding_dim:
        if embeddings is None:
            raise ValueError("this model uses embeddings: pass embeddings for the cases")
        embeddings = np.asarray(embeddings)
        if embeddings.shape != (n, spec.embedding_dim):
            raise ValueError(
                f"embeddings have shape {embeddings.shape}, expected {(n, spec.embedding_dim)}"
            )
        used = spec.used_embedding_columns
        X[:, col : col + len(used)] = (
            embeddings if spec.embedding_columns is None else embeddings[:, used]
        )
        col += len(used)
    if spec.knn_neighbors:
        X[:, col] = pd.to_numeric(cases[KNN_FEATURE], errors="coerce").to_numpy(dtype=np.float32)
        col += 1
    assert col == X.shape[1]
    return X


def deviation_matrix(spec: FeatureSpec, cases: pd.DataFrame) -> np.ndarray:
    """The spec's entity-deviation columns of ``cases``, shape (n_cases, n_deviation) float32."""
    return entity_deviation_features(
        cases,
        spec.deviation_columns,
        entity_column=spec.entity_column,
        ts_column=spec.ts_column,
    ).to_numpy(dtype=np.float32)


def deviation_matrix_cached(
    spec: FeatureSpec, cases: pd.DataFrame, folder: Path
) -> tuple[np.ndarray, Path]:
    """:func:`deviation_matrix` of a whole dataset, kept in ``folder`` for the next call.

    The deviation columns use no label, so they change only with the cases: a dataset
    snapshot's folder can keep them (1.1 s of a 1.17M-case iteration's 2.8 s of features).
    A file of the wrong shape is recomputed. Returns the matrix (memory-mapped when read
    back) and its file.
    """
    key = json.dumps([spec.deviation_columns, spec.entity_column, spec.ts_column])
    path = Path(folder) / f"deviation-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npy"
    expected = (len(cases), len(spec.deviation_columns))
    if path.exists():
        try:
            kept = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            kept = None
        if kept is not None and kept.shape == expected and kept.dtype == np.float32:
            return kept, path
    values = deviation_matrix(spec, cases)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(partial, values)
    partial.replace(path)
    return values, path


FEW_CASES = 1_000  # below this many cases, the positives are cut to those that can count


def _sharing_a_value(positives: pd.DataFrame, cases: pd.DataFrame, columns: list[str]):
    """The positives sharing some column's value with some case: the only ones a count sees.

    A case page scores one case against every known positive (21,640 at 11.7M cases); the
    counts of a column only ever see the positives of the case's own value in it.
    """
    keep = np.zeros(len(positives), dtype=bool)
    for c in columns:
        missing = positives[c].isna().to_numpy()
        wanted = cases[c].dropna().astype(str).unique()
        keep |= positives[c].astype(str).isin(wanted).to_numpy() & ~missing
        if cases[c].isna().any():  # missing values count as one value of their own
            keep |= missing
    return positives[keep].reset_index(drop=True)


def _label_derived(
    spec: FeatureSpec, cases: pd.DataFrame, positives: pd.DataFrame | None
) -> np.ndarray:
    """Label-derived counts for ``cases`` from ``positives``, shape (n_cases, n_derived)."""
    if positives is None:
        raise ValueError("this model has label-derived features: pass the positives frame")
    cols = spec.positive_columns
    missing = [c for c in cols if c not in positives.columns]
    if missing:
        raise ValueError(f"positives lack columns: {missing}")
    positives = positives[cols].reset_index(drop=True)
    if len(cases) <= FEW_CASES:
        positives = _sharing_a_value(positives, cases, spec.label_derived_columns)
    # Score cases against the positives by stacking both: only the positives' rows count, and a
    # case never counts itself (the windows end strictly before its own time).
    stacked = pd.concat([positives, cases[cols].reset_index(drop=True)], ignore_index=True)
    for c in spec.label_derived_columns:
        stacked[c] = stacked[c].astype(str).where(stacked[c].notna(), None)
    stacked[spec.ts_column] = as_datetime(stacked[spec.ts_column])
    mask = np.zeros(len(stacked), dtype=bool)
    mask[: len(positives)] = True
    derived = label_derived_features(
        stacked,
        mask,
        columns=spec.label_derived_columns,
        windows_days=spec.label_derived_windows_days,
        ts_column=spec.ts_column,
    )
    return derived.to_numpy(dtype=np.float32)[len(positives) :]
