"""The kNN score as a model feature: the share of known positives among a case's neighbours.

Issue 8 (seed 003): "a k-NN score can join the model's features". For every case, the share of
known positives (P: seed positives and expert-confirmed cases, never the ground truth) among its
``k`` nearest neighbours, searched with :class:`learning.neighbors.NeighborIndex` (exact for small
data, HNSW above) in the embedding space, or in robustly scaled hand features when the model has
no embeddings. Each case is left out of its own neighbour list, so a positive never counts itself
(the feature would otherwise hand the trees the training label).

The values depend on the whole indexed pool and on P at training time: a model trained with this
feature needs the column (:data:`KNN_FEATURE`) supplied beside the raw cases when it scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from learning.neighbors import NeighborIndex, knn_score, neighbor_matrix

#: Column name of the feature in the model's matrix and in the cases a caller scores.
KNN_FEATURE = "knn_positive_share"
#: A model folder's kNN feature of every case in row order (models trained with it).
KNN_FILE = "knn_feature.npy"
#: Neighbours behind the share (the case page's kNN score uses the same number).
DEFAULT_N_NEIGHBORS = 10
#: Recall@10 the HNSW index is tuned to when the data is too large for exact search.
TARGET_RECALL = 0.95
#: Cases queried at a time (bounds memory; one progress report per chunk).
QUERY_CHUNK = 20_000


def knn_space(embeddings: np.ndarray | None, hand_features: np.ndarray | None) -> np.ndarray:
    """The space the neighbours are searched in: embeddings if any, else scaled hand features.

    Parameters
    ----------
    embeddings : ndarray, shape (n_samples, n_dims), or None
    hand_features : ndarray, shape (n_samples, n_features), or None
        Numeric case columns (NaN allowed); robustly scaled by
        :func:`learning.neighbors.neighbor_matrix`.

    Returns
    -------
    ndarray of float32, shape (n_samples, n_dims or n_features)
    """
    if embeddings is not None:
        matrix, _ = neighbor_matrix(embeddings, None)
    elif hand_features is not None and np.asarray(hand_features).shape[1] > 0:
        matrix, _ = neighbor_matrix(None, hand_features)
    else:
        raise ValueError("the kNN feature needs embeddings or numeric case columns")
    return matrix


def knn_index(
    space: np.ndarray,
    *,
    method: str = "auto",
    exact_max_samples: int = 20_000,
    n_jobs: int = 1,
    random_state: int = 0,
) -> NeighborIndex:
    """A neighbour index over ``space`` (shape (n_samples, n_features)), HNSW tuned above exact."""
    return NeighborIndex(
        method=method,
        exact_max_samples=exact_max_samples,
        target_recall=TARGET_RECALL,
        n_jobs=n_jobs,
        random_state=random_state,
    ).fit(space)


def knn_positive_share(
    index: NeighborIndex,
    positive_mask: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_N_NEIGHBORS,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Share of known positives among each indexed case's neighbours, the case itself left out.

    Parameters
    ----------
    index : NeighborIndex
        Fitted on all cases (rows are case rows).
    positive_mask : ndarray of bool, shape (n_samples,)
        Known positives: seeds and confirmed cases.
    n_neighbors : int
    progress : callable (done, total), optional

    Returns
    -------
    ndarray of float32, shape (n_samples,)
        In [0, 1]; 0 for a lone case (no neighbour).
    """
    positive_mask = np.asarray(positive_mask, dtype=bool)
    n = index.n_samples_fit_
    if positive_mask.shape != (n,):
        raise ValueError(f"positive_mask has shape {positive_mask.shape}, expected ({n},)")
    share = np.zeros(n, dtype=np.float32)
    if n < 2:
        return share
    for start in range(0, n, QUERY_CHUNK):
        stop = min(start + QUERY_CHUNK, n)
        _, neighbors = index.kneighbors_of_rows(np.arange(start, stop), n_neighbors)
        share[start:stop] = knn_score(neighbors, positive_mask)
        if progress is not None:
            progress(stop, n)
    return share
