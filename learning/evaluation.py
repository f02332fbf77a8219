"""Ranking metrics of the seed's evaluation: PR-AUC, ROC-AUC, recall at precision, bands."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

PRECISION_LEVELS = (0.5, 0.8, 0.9)
# Top-score percentile bands of the seed's figure 3: (name, lower percentile, upper percentile).
BANDS = (("99-100", 99, 100), ("95-99", 95, 99), ("90-95", 90, 95), ("85-90", 85, 90))
# Cumulative views of the same ranking: precision among the top 1%, 5%, 10% and 15%.
TOP_PERCENTS = (1, 5, 10, 15)


def recall_at_precision(y_true: np.ndarray, scores: np.ndarray, precision: float) -> float:
    """Largest recall at any threshold whose precision is at least ``precision``.

    Parameters
    ----------
    y_true : array-like of {0, 1}, shape (n,)
    scores : array-like of float, shape (n,)
    precision : float

    Returns
    -------
    float
        0.0 when no threshold reaches the precision.
    """
    prec, rec, _ = precision_recall_curve(y_true, scores)
    ok = prec >= precision
    return float(rec[ok].max()) if ok.any() else 0.0


def band_precision(
    y_true: np.ndarray, scores: np.ndarray, bands: tuple = BANDS
) -> dict[str, float]:
    """Precision inside top-score percentile bands.

    Cases are ranked by descending score (ties in input order); band ``"95-99"`` holds the cases
    ranked between the top 1% and the top 5%.

    Returns
    -------
    dict of str to float
    """
    y_true = np.asarray(y_true)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    n = len(order)
    out = {}
    for name, low, high in bands:
        start = int(round(n * (100 - high) / 100))
        stop = int(round(n * (100 - low) / 100))
        band = order[start:stop]
        out[name] = float(y_true[band].mean()) if len(band) else float("nan")
    return out


def precision_at_top(
    y_true: np.ndarray, scores: np.ndarray, percents: tuple[int, ...] = TOP_PERCENTS
) -> dict[str, float]:
    """Precision among the top-scored ``p`` percent of the cases, for each ``p``.

    The cumulative counterpart of :func:`band_precision` (same ranking, same tie order): a
    band's precision is the slope of this curve between two percentiles.

    Returns
    -------
    dict of str to float
        Keys ``"1"``, ``"5"``, ``"10"``, ``"15"`` by default.
    """
    y_true = np.asarray(y_true)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    out = {}
    for p in percents:
        stop = int(round(len(order) * p / 100))
        out[f"{p:g}"] = float(y_true[order[:stop]].mean()) if stop else float("nan")
    return out


def ranking_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict:
    """All metrics of the benchmark report for one score vector.

    Returns
    -------
    dict
        ``pr_auc``, ``roc_auc``, ``recall_at_precision`` (keys "0.5", "0.8", "0.9"),
        ``band_precision`` (keys "99-100", "95-99", "90-95", "85-90") and ``precision_at_top``
        (keys "1", "5", "10", "15").
    """
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "pr_auc": float(average_precision_score(y_true, scores)),
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "recall_at_precision": {
            f"{p:g}": recall_at_precision(y_true, scores, p) for p in PRECISION_LEVELS
        },
        "band_precision": band_precision(y_true, scores),
        "precision_at_top": precision_at_top(y_true, scores),
    }
