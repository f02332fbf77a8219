"""A 2-D map of the cases: a stratified sample projected with UMAP (PCA for tiny samples).

The app shows this map on a model version's page; it is computed here, without Django, from
arrays: the pool states of every case, which cases are in the version's batch, and the vectors of
the sampled cases (the version's embeddings, or its standardized feature matrix).

The sample keeps the rare groups an expert looks for (seed positives, confirmed, not confirmed,
the batch) and fills the rest with other cases drawn at random, so a map of 5,000 cases out of a
million still shows every group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from learning.neighbors import exact_kneighbors

#: Cases on a map by default.
DEFAULT_SAMPLE_SIZE = 5000
#: Fewer cases than this are projected with PCA (UMAP needs a neighbourhood graph to work on).
UMAP_MIN_CASES = 50
#: UMAP's neighbourhood size (its default) and spread of the points in the plane.
UMAP_NEIGHBORS = 15
UMAP_MIN_DIST = 0.1
#: Up to this many cases the neighbour graph is computed exactly (BLAS), above by UMAP itself.
EXACT_KNN_MAX_CASES = 20_000
#: Pool states sampled first (in this order), before the batch and the rest.
PRIORITY_STATES = ("P", "confirmed", "not_confirmed")
#: At most this share of the sample goes to the priority groups when the rest has enough cases.
PRIORITY_MAX_SHARE = 0.5


def stratified_sample(
    states: np.ndarray,
    in_batch: np.ndarray,
    n: int = DEFAULT_SAMPLE_SIZE,
    *,
    priority_states: Sequence[str] = PRIORITY_STATES,
    random_state: int | None = 0,
) -> np.ndarray:
    """Rows of a sample of ``n`` cases in which every priority group is present.

    Groups: each of ``priority_states``, then the batch cases (``in_batch``) not in those states,
    then all the other cases ("the rest", mostly U). The priority groups together get at most
    ``PRIORITY_MAX_SHARE`` of ``n`` when the rest can fill the remainder (more when it cannot),
    shared out equally: a small group is taken whole and what it leaves goes to the larger ones.
    The rest fills what the priority groups leave.

    Parameters
    ----------
    states : ndarray of str, shape (n_cases,)
        Every case's pool state.
    in_batch : ndarray of bool, shape (n_cases,)
        The cases of the batch to show.
    n : int
        Sample size; all cases when there are no more than ``n``.
    random_state : int or None

    Returns
    -------
    rows : ndarray of int64, shape (min(n, n_cases),)
        Sorted case rows.
    """
    states = np.asarray(states)
    in_batch = np.asarray(in_batch, dtype=bool)
    if states.shape != in_batch.shape:
        raise ValueError(f"states {states.shape} and in_batch {in_batch.shape} differ in shape")
    n_cases = len(states)
    if n <= 0:
        raise ValueError(f"the sample size must be positive, got {n}")
    if n_cases <= n:
        return np.arange(n_cases, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    grouped = np.isin(states, list(priority_states))
    groups = [np.flatnonzero(states == s) for s in priority_states]
    groups.append(np.flatnonzero(in_batch & ~grouped))
    rest = np.flatnonzero(~grouped & ~in_batch)
    n_priority = sum(len(g) for g in groups)
    budget = min(n_priority, max(int(n * PRIORITY_MAX_SHARE), n - len(rest)))
    quotas = _water_fill([len(g) for g in groups], budget)
    chosen = [_choose(rng, g, q) for g, q in zip(groups, quotas, strict=True)]
    chosen.append(_choose(rng, rest, n - sum(quotas)))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _water_fill(sizes: Sequence[int], budget: int) -> list[int]:
    """Share ``budget`` among groups of ``sizes`` equally, no group past its size."""
    quotas = [0] * len(sizes)
    open_groups = [i for i, s in enumerate(sizes) if s > 0]
    left = budget
    while left > 0 and open_groups:
        share = max(left // len(open_groups), 1)
        for i in list(open_groups):
            take = min(share, sizes[i] - quotas[i], left)
            quotas[i] += take
            left -= take
            if quotas[i] == sizes[i]:
                open_groups.remove(i)
            if left == 0:
                break
    return quotas


def _choose(rng: np.random.Generator, rows: np.ndarray, k: int) -> np.ndarray:
    if k >= len(rows):
        return rows
    return rng.choice(rows, size=k, replace=False)


def standardize(X: np.ndarray) -> np.ndarray:
    """Columns to mean 0 and standard deviation 1; missing values to 0 (the mean).

    Constant columns become 0. Returns float32 of the shape of ``X`` (n_samples, n_features).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    X = np.where(np.isfinite(X), X, np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
        std = np.nanstd(X, axis=0) if len(X) else np.ones(X.shape[1])
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    Z = (X - mean) / std
    return np.nan_to_num(Z, nan=0.0).astype(np.float32)


@dataclass
class Projection:
    """Where each sampled case lies on the map.

    Attributes
    ----------
    xy : ndarray of float32, shape (n_samples, 2)
        Coordinates scaled into [0, 1] on both axes.
    method : str
        ``"umap"`` or ``"pca"``.
    """

    xy: np.ndarray
    method: str


def project_2d(X: np.ndarray, *, method: str = "auto", random_state: int = 0) -> Projection:
    """Project ``X`` (n_samples, n_features) to the plane.

    ``method="auto"`` takes UMAP from ``UMAP_MIN_CASES`` samples on and PCA below (and for a
    single feature, where there is nothing to lay out but a line). UMAP runs single-threaded with
    a fixed ``random_state``, so a map is the same every time it is computed.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values (standardize it first)")
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be auto, umap or pca, not {method!r}")
    if method == "auto":
        method = "umap" if len(X) >= UMAP_MIN_CASES and X.shape[1] >= 2 else "pca"
    xy = _umap(X, random_state) if method == "umap" else _pca(X)
    return Projection(xy=_unit_square(xy), method=method)


def _umap(X: np.ndarray, random_state: int) -> np.ndarray:
    import warnings

    import umap

    n_neighbors = min(UMAP_NEIGHBORS, len(X) - 1)
    precomputed = None
    if len(X) <= EXACT_KNN_MAX_CASES:
        # Exact neighbours by BLAS instead of UMAP's NN-descent: its numba code compiles for
        # about a minute on the first map of each process; this takes a second or two.
        distances, indices = exact_kneighbors(X, X, n_neighbors)
        precomputed = (indices, distances, None)
    reducer = umap.UMAP(
        n_neighbors=n_neighbors,
        min_dist=UMAP_MIN_DIST,
        random_state=random_state,
        n_jobs=1,  # a fixed random_state runs single-threaded anyway; say so, no warning
        precomputed_knn=precomputed or (None, None, None),
    )
    with warnings.catch_warnings():
        # Without a search index the reducer cannot transform new points: the map needs none.
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*", category=UserWarning)
        return np.asarray(reducer.fit_transform(X), dtype=np.float64)


def _pca(X: np.ndarray) -> np.ndarray:
    """The first two principal components (zeros where there are fewer)."""
    xy = np.zeros((len(X), 2))
    if len(X) < 2:
        return xy
    centered = X - X.mean(axis=0)
    _, s, vt = np.linalg.svd(centered.astype(np.float64), full_matrices=False)
    k = min(2, int((s > 1e-12).sum()))
    xy[:, :k] = centered @ vt[:k].T
    return xy


def _unit_square(xy: np.ndarray) -> np.ndarray:
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return ((xy - low) / span).astype(np.float32)


def group_counts(states: np.ndarray, in_batch: np.ndarray) -> Mapping[str, int]:
    """How many cases of each pool state, and in the batch, a sample holds."""
    values, counts = np.unique(np.asarray(states), return_counts=True)
    out = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    out["batch"] = int(np.asarray(in_batch, dtype=bool).sum())
    return out
