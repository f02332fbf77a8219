"""Scores from a stored model version, through the same code as the exported bundle's scorer.

The app and the standalone scorer share :class:`learning.score.ScoringModel` (which calls
``learning.featurespec.build_matrix``), so a case scores the same inside and outside the app.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from labelapp.models import ModelVersion
from learning.score import ScoringError, ScoringModel

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
