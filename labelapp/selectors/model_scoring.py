"""Scores and explanations from a stored model version, through the same code as the export.

The app and the standalone scorer share :class:`learning.score.ScoringModel` (which calls
``learning.featurespec.build_matrix``), so a case scores the same inside and outside the app.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labelapp.models import Case, ModelVersion
from labelapp.selectors.datasets import snapshot_dir_for
from learning.score import ScoringError, ScoringModel, normalize_ts

TOP_CONTRIBUTIONS = 15
_CACHE_SIZE = 4
_cache: OrderedDict[tuple[str, float], ScoringModel] = OrderedDict()
_cache_lock = threading.Lock()


class ScoringUnavailable(Exception):
    """The model version cannot score (artifacts missing) or these cases cannot be scored."""


class ModelUnavailable(ScoringUnavailable):
    """The model version's artifacts are missing or unreadable."""


class CasesNotScorable(ScoringUnavailable):
    """The cases lack what the model needs (columns, events) or hold unusable values."""


def scoring_model_for(model_version: ModelVersion) -> ScoringModel:
    """The model version's scorer, loaded once and kept while its model file is unchanged."""
    folder = Path(model_version.artifact_dir)
    model_file = folder / "model.txt"
    if not model_file.is_file():
        raise ModelUnavailable(f"model version {model_version.pk} has no model file")
    key = (str(folder), model_file.stat().st_mtime)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        model = ScoringModel.from_dir(folder)
    except (ScoringError, ValueError, OSError) as exc:
        raise ModelUnavailable(f"model version {model_version.pk}: {exc}") from exc
    with _cache_lock:
        _cache[key] = model
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def score_cases(
    *, model_version: ModelVersion, cases: pd.DataFrame, events: pd.DataFrame | None = None
) -> np.ndarray:
    """The model version's probability for each case, shape (n_cases,)."""
    model = scoring_model_for(model_version)
    try:
        return model.score(cases, events)
    except ScoringError as exc:
        raise CasesNotScorable(str(exc)) from exc


def _case_frame(case: Case) -> pd.DataFrame:
    """The case's raw row: from the dataset snapshot when there is one, else from the database."""
    snapshot = snapshot_dir_for(case.dataset) / "cases.parquet"
    if snapshot.is_file():
        frame = pd.read_parquet(snapshot, filters=[("row", "==", case.row)])
        if len(frame) == 1:
            return frame
    row = {
        **(case.features or {}),
        "case_id": case.case_id,
        "entity_id": case.entity_id,
        "ts": pd.Timestamp(case.ts) if case.ts else pd.NaT,
    }
    return normalize_ts(pd.DataFrame([row]))


def _entity_events(case: Case) -> pd.DataFrame | None:
    snapshot = snapshot_dir_for(case.dataset) / "events.parquet"
    if snapshot.is_file():
        return pd.read_parquet(snapshot, filters=[("entity_id", "==", case.entity_id)])
    events = case.dataset.events.filter(entity_id=case.entity_id).order_by("ts")
    rows = [{"entity_id": e.entity_id, "ts": e.ts, **e.fields} for e in events]
    return normalize_ts(pd.DataFrame(rows)) if rows else None


def case_explanation(
    *, case: Case, model_version: ModelVersion, top: int = TOP_CONTRIBUTIONS
) -> dict[str, Any]:
    """The model version's score of one case and the features that drove it.

    Returns
    -------
    dict
        ``model_version`` (id), ``model_score`` (probability) and ``contributions``: up to ``top``
        ``{feature, value, contribution}`` (SHAP, log-odds), largest absolute first.
    """
    model = scoring_model_for(model_version)
    cases = _case_frame(case)
    events = _entity_events(case) if model.spec.embedding_dim else None
    try:
        X = model.matrix(cases, events)
    except ScoringError as exc:
        raise CasesNotScorable(str(exc)) from exc
    contributions = np.asarray(model.booster.predict(X, pred_contrib=True))[0, :-1]
    names = model.spec.feature_names
    order = np.argsort(-np.abs(contributions), kind="stable")[:top]
    return {
        "model_version": model_version.pk,
        "model_score": float(model.score_matrix(X)[0]),
        "contributions": [
            {
                "feature": names[i],
                "value": None if np.isnan(X[0, i]) else float(X[0, i]),
                "contribution": float(contributions[i]),
            }
            for i in order
        ],
    }
