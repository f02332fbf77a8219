"""Reads for the case page: features against the population, timeline, history, score drivers.

Everything here is either one index-backed query or computed once and cached: the typical range of
every feature is computed once per dataset (from its columnar snapshot, not per request over the
database) and kept both in memory and in ``feature_ranges.json`` beside the snapshot; a model's
LightGBM booster is loaded once per process.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from django.core.cache import cache

from labelapp.models import BatchItem, Case, Dataset, Event, Label, ModelVersion
from labelapp.selectors.datasets import snapshot_dir_for

logger = logging.getLogger(__name__)

#: Events shown on the timeline (the entity's latest ones up to the case's moment).
TIMELINE_EVENTS = 30
#: Earlier labels on the entity's other cases shown in the history.
ENTITY_HISTORY = 20
#: The population's "typical range" of a feature: these percentiles.
RANGE_PERCENTILES = (5.0, 50.0, 95.0)
#: Features shown in the "what pushed the score" panel.
TOP_CONTRIBUTIONS = 8
#: How long a case's contributions stay cached (they only change with the model).
CONTRIBUTIONS_CACHE_SECONDS = 3600
#: Rows read at once when computing ranges from the database (datasets without a snapshot).
RANGE_DB_CHUNK = 5000


# --- the population's typical ranges ---------------------------------------------------------


@dataclass(frozen=True)
class FeatureRange:
    low: float
    median: float
    high: float


_ranges_lock = threading.Lock()
_ranges_cache: dict[tuple[int, str, str], dict[str, FeatureRange]] = {}


def numeric_feature_columns(dataset: Dataset) -> list[str]:
    schema_numeric = (dataset.schema or {}).get("cases", {}).get("numeric")
    if schema_numeric:
        return list(schema_numeric)
    return list(dataset.feature_columns or [])


def feature_ranges(dataset: Dataset) -> dict[str, FeatureRange]:
    """5th, 50th and 95th percentile of every numeric feature over the whole dataset.

    Computed once per dataset snapshot and cached in memory and on disk.
    """
    stamp = dataset.updated_at.isoformat() if dataset.updated_at else ""
    key = (dataset.pk, str(snapshot_dir_for(dataset)), stamp)
    cached = _ranges_cache.get(key)
    if cached is not None:
        return cached
    with _ranges_lock:
        cached = _ranges_cache.get(key)
        if cached is None:
            cached = _load_or_compute_ranges(dataset)
            _ranges_cache[key] = cached
    return cached


def _load_or_compute_ranges(dataset: Dataset) -> dict[str, FeatureRange]:
    columns = numeric_feature_columns(dataset)
    snapshot = snapshot_dir_for(dataset)
    cache_file = snapshot / "feature_ranges.json"
    if cache_file.exists():
        stored = json.loads(cache_file.read_text())
        if set(stored) >= set(columns):
            return {name: FeatureRange(*stored[name]) for name in columns}
    if (snapshot / "cases.parquet").exists():
        import pyarrow.parquet as pq

        table = pq.read_table(snapshot / "cases.parquet", columns=columns)
        values = {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns}
    else:
        values = _feature_values_from_db(dataset, columns)
    ranges = {}
    for name, column in values.items():
        column = np.asarray(column, dtype=np.float64)
        if column.size == 0 or np.isnan(column).all():
            continue
        low, median, high = np.nanpercentile(column, RANGE_PERCENTILES)
        ranges[name] = FeatureRange(float(low), float(median), float(high))
    if (snapshot / "cases.parquet").exists():
        try:
            cache_file.write_text(
                json.dumps({k: list(vars(v).values()) for k, v in ranges.items()})
            )
        except OSError:
            logger.warning("could not cache feature ranges in %s", cache_file)
    return ranges


def _feature_values_from_db(dataset: Dataset, columns: list[str]) -> dict[str, np.ndarray]:
    collected: dict[str, list[float]] = {name: [] for name in columns}
    rows = Case.objects.filter(dataset=dataset).values_list("features", flat=True)
    for features in rows.iterator(chunk_size=RANGE_DB_CHUNK):
        for name in columns:
            collected[name].append(_as_float(features.get(name)))
    return {name: np.asarray(v, dtype=np.float64) for name, v in collected.items()}


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class FeatureRow:
    name: str
    value: Any
    range: FeatureRange | None
    #: Where the value sits on the low..high bar, 0..100 (clipped); None when not numeric.
    position: float | None
    #: "high" / "low" when outside the population's 5-95% range.
    flag: str = ""


def case_feature_rows(case: Case) -> list[FeatureRow]:
    dataset = case.dataset
    ranges = feature_ranges(dataset)
    names = list(dataset.feature_columns or []) or list(case.features)
    rows = []
    for name in names:
        value = case.features.get(name)
        r = ranges.get(name)
        position, flag = None, ""
        number = _as_float(value)
        if r is not None and not math.isnan(number):
            span = r.high - r.low
            position = 50.0 if span <= 0 else min(100.0, max(0.0, 100 * (number - r.low) / span))
            flag = "high" if number > r.high else "low" if number < r.low else ""
        rows.append(FeatureRow(name=name, value=value, range=r, position=position, flag=flag))
    return rows


# --- the behavior timeline -------------------------------------------------------------------


@dataclass
class Timeline:
    events: list[Event]
    fields: list[str]
    amount_field: str | None
    svg: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple[datetime, list[Any]]]:
        """One row per event: its time and its fields' values in ``fields`` order."""
        return [(e.ts, [e.fields.get(name, "") for name in self.fields]) for e in self.events]


def case_timeline(case: Case, *, limit: int = TIMELINE_EVENTS) -> Timeline:
    """The entity's latest events up to the case's moment (newest first) and a chart of amounts."""
    if not case.entity_id:
        return Timeline(events=[], fields=[], amount_field=None)
    qs = Event.objects.filter(dataset_id=case.dataset_id, entity_id=case.entity_id)
    if case.ts is not None:
        qs = qs.filter(ts__lte=case.ts)
    events = list(qs.order_by("-ts", "-id")[:limit])
    fields: list[str] = []
    for event in events:
        for name in event.fields:
            if name not in fields:
                fields.append(name)
    amount_field = _amount_field(case.dataset, fields, events)
    timeline = Timeline(events=events, fields=fields, amount_field=amount_field)
    if amount_field and events:
        timeline.svg = _amount_chart(events, amount_field, case.ts)
    return timeline


def _amount_field(dataset: Dataset, fields: list[str], events: list[Event]) -> str | None:
    numeric = (dataset.schema or {}).get("events", {}).get("numeric") or []
    for name in ["amount", *numeric]:
        if name in fields:
            return name
    for name in fields:
        if events and not math.isnan(_as_float(events[0].fields.get(name))):
            return name
    return None


CHART_W, CHART_H, CHART_PAD = 560, 120, 8


def _amount_chart(events: list[Event], amount_field: str, moment: datetime | None) -> dict:
    """Coordinates for a small inline SVG: a dot per event, a line through them, the case marked."""
    points = [(e.ts.timestamp(), _as_float(e.fields.get(amount_field))) for e in reversed(events)]
    points = [(t, a) for t, a in points if not math.isnan(a)]
    if not points:
        return {}
    t0, t1 = points[0][0], points[-1][0]
    if moment is not None:
        t1 = max(t1, moment.timestamp())
    top = max(a for _, a in points) or 1.0
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return round(CHART_PAD + (CHART_W - 2 * CHART_PAD) * (t - t0) / span, 1)

    def y(a: float) -> float:
        return round(CHART_H - CHART_PAD - (CHART_H - 2 * CHART_PAD) * max(a, 0) / top, 1)

    dots = [{"x": x(t), "y": y(a), "amount": a} for t, a in points]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "dots": dots,
        "path": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "marker_x": x(moment.timestamp()) if moment is not None else None,
        "max_amount": top,
        "baseline": CHART_H - CHART_PAD,
    }


# --- history ---------------------------------------------------------------------------------


def case_labels(case: Case) -> list[Label]:
    return list(
        Label.objects.filter(case=case)
        .select_related("user", "pattern")
        .order_by("-created_at", "-id")
    )


def entity_labels(case: Case, *, limit: int = ENTITY_HISTORY) -> list[Label]:
    """Labels on the entity's other cases (what experts said about this customer before)."""
    if not case.entity_id:
        return []
    return list(
        Label.objects.filter(case__dataset_id=case.dataset_id, case__entity_id=case.entity_id)
        .exclude(case=case)
        .select_related("user", "pattern", "case")
        .order_by("-created_at", "-id")[:limit]
    )


def case_batch_item(case: Case) -> BatchItem | None:
    """The batch item that put this case in the queue (newest, not withdrawn)."""
    return (
        BatchItem.objects.filter(case=case)
        .exclude(status=BatchItem.Status.WITHDRAWN)
        .select_related("iteration")
        .order_by("-iteration__number", "-id")
        .first()
    )


def case_score_rank(case: Case) -> dict[str, str] | None:
    """Where the case's score ranks among the current scores of all the dataset's cases.

    Rank 1 is the highest; tied scores share the best rank. Read from ``score_percentile``
    (the share of cases scoring at most as high, written with the scores), so no query.
    """
    n = case.dataset.n_cases
    if case.score_percentile is None or not n:
        return None
    rank = round(n * (1.0 - case.score_percentile / 100.0)) + 1
    top = 100.0 * rank / n
    return {
        "rank": f"{rank:,}",
        "of": f"{n:,}",
        "top_percent": f"{top:.1f}" if top >= 1 else f"{top:.2g}",
    }


def batch_size(item: BatchItem) -> int:
    return BatchItem.objects.filter(iteration_id=item.iteration_id).count()


# --- what pushed the score -------------------------------------------------------------------


@dataclass
class Contributions:
    model: ModelVersion | None
    rows: list[tuple[str, float]]
    base_value: float | None = None
    unavailable: str = ""


def score_contributions(case: Case, *, top: int = TOP_CONTRIBUTIONS) -> Contributions:
    """The current model's contributions for ``case``, cached per (model, case)."""
    model_id = case.dataset.current_model_id
    key = f"contrib:{model_id}:{case.pk}:{top}"
    cached = cache.get(key) if model_id else None
    if cached is None:
        cached = _score_contributions(case, top=top)
        if model_id and not cached.unavailable:
            cache.set(key, cached, CONTRIBUTIONS_CACHE_SECONDS)
    return cached


def _score_contributions(case: Case, *, top: int) -> Contributions:
    """LightGBM ``pred_contrib`` of the dataset's current model for this case.

    Returns a ``Contributions`` whose ``unavailable`` says why when there is no model (or its
    artifacts cannot produce the case's feature row); never made-up numbers.
    """
    model = case.dataset.current_model
    if model is None:
        return Contributions(None, [], unavailable="No model has been trained on this dataset yet.")
    artifact_dir = Path(model.artifact_dir)
    if not (artifact_dir / "model.txt").exists():
        return Contributions(model, [], unavailable=f"Model v{model.pk} has no model.txt.")
    try:
        booster, spec = _load_model(str(artifact_dir))
        row = _case_matrix(case, spec, artifact_dir)
        contrib = booster.predict(row, pred_contrib=True)[0]
    except Exception as exc:  # the panel degrades; the page must still serve the expert
        logger.exception("contributions failed for case %s", case.pk)
        return Contributions(model, [], unavailable=f"Could not compute contributions: {exc}")
    names = list(getattr(spec, "feature_names", None) or booster.feature_name())
    pairs = sorted(zip(names, contrib[:-1], strict=False), key=lambda p: -abs(p[1]))
    return Contributions(
        model, [(n, float(v)) for n, v in pairs[:top] if v != 0], base_value=float(contrib[-1])
    )


@lru_cache(maxsize=4)
def _load_model(artifact_dir: str):
    import lightgbm as lgb

    from learning.featurespec import FeatureSpec

    booster = lgb.Booster(model_file=str(Path(artifact_dir) / "model.txt"))
    spec = FeatureSpec.from_json((Path(artifact_dir) / "feature_spec.json").read_text())
    return booster, spec


@lru_cache(maxsize=4)
def _embeddings(artifact_dir: str) -> np.ndarray:
    """The embeddings the model was trained on (``inputs.json`` names them), memory-mapped."""
    inputs = Path(artifact_dir) / "inputs.json"
    path = json.loads(inputs.read_text()).get("embeddings") if inputs.exists() else None
    if not path or not Path(path).exists():
        raise FileNotFoundError("the model uses embeddings and their file is not available")
    return np.load(path, mmap_mode="r")


@lru_cache(maxsize=4)
def _knn_feature(artifact_dir: str) -> np.ndarray:
    """Every case's kNN feature as the model was trained with it, memory-mapped."""
    from learning.knn_feature import KNN_FILE

    return np.load(Path(artifact_dir) / KNN_FILE, mmap_mode="r")


@lru_cache(maxsize=4)
def _positives(artifact_dir: str):
    import pandas as pd

    path = Path(artifact_dir) / "positives.parquet"
    return pd.read_parquet(path) if path.exists() else None


def _case_matrix(case: Case, spec: Any, artifact_dir: Path) -> np.ndarray:
    import pandas as pd

    from learning.featurespec import build_matrix

    frame = pd.DataFrame(
        [
            {
                "case_id": case.case_id,
                "entity_id": case.entity_id,
                "ts": pd.Timestamp(case.ts).tz_convert(None) if case.ts else pd.NaT,
                "row": case.row,
                **case.features,
            }
        ]
    )
    embeddings = deviation = None
    if spec.embedding_dim:
        embeddings = _embeddings(str(artifact_dir))[[case.row]]
    if spec.deviation_columns:
        deviation = _deviation(str(artifact_dir))[[case.row]]
    if spec.knn_neighbors:
        from learning.knn_feature import KNN_FEATURE

        frame[KNN_FEATURE] = float(_knn_feature(str(artifact_dir))[case.row])
    return build_matrix(
        spec,
        frame,
        positives=_positives(str(artifact_dir)),
        embeddings=embeddings,
        deviation=deviation,
    )


@lru_cache(maxsize=4)
def _deviation(artifact_dir: str) -> np.ndarray:
    """Entity-deviation columns of every case, computed over the whole dataset at training."""
    from learning.featurespec import DEVIATION_FILE

    return np.load(Path(artifact_dir) / DEVIATION_FILE, mmap_mode="r")
