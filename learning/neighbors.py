"""Nearest-neighbour retrieval over case embeddings and scaled hand features (seed 003).

``NeighborIndex`` follows scikit-learn's ``NearestNeighbors`` shape (``fit`` then ``kneighbors``)
with two back ends:

- ``"exact"``: brute force with BLAS, the query set cut in chunks so the distance block stays
  within ``chunk_bytes`` of memory. Always right; its cost grows with ``n_samples`` per query.
- ``"hnsw"``: an HNSW graph (hnswlib). Approximate; ``ef_search`` trades recall for speed. With
  ``target_recall`` set, ``fit`` measures recall@k against exact search on a sample of the indexed
  points and raises ``ef_search`` until the target is met (the choice is a measurement, stored in
  ``tuning_``).

``method="auto"`` takes exact search up to ``exact_max_samples`` points and HNSW above: on the
development machine exact search answers a single query in about a millisecond up to ~20k
points of dimension 128 (see ``docs/benchmarks.md``), where the graph would buy nothing.

Distances are Euclidean (``metric="l2"``) or ``1 - cosine similarity`` (``metric="cosine"``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

METHODS = ("auto", "exact", "hnsw")
METRICS = ("l2", "cosine")
INDEX_FILE = "neighbors.json"
HNSW_FILE = "hnsw.bin"
VECTORS_FILE = "vectors.npy"


def _as_float32(X) -> np.ndarray:
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    return X


def _normalize(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def exact_kneighbors(
    data: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    metric: str = "l2",
    data_sq_norms: np.ndarray | None = None,
    chunk_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest neighbours with BLAS, queries taken in memory-bounded chunks.

    Parameters
    ----------
    data : ndarray of float32, shape (n_samples, n_features)
        Indexed points (unit-normalised already when ``metric="cosine"``).
    queries : ndarray of float32, shape (n_queries, n_features)
        Unit-normalised already when ``metric="cosine"``.
    k : int
    metric : {"l2", "cosine"}
    data_sq_norms : ndarray of float32, shape (n_samples,), optional
        ``(data ** 2).sum(1)``, to reuse across calls.
    chunk_bytes : int
        Memory for one block of distances (``chunk * n_samples * 4`` bytes).

    Returns
    -------
    distances : ndarray of float32, shape (n_queries, k)
        Sorted ascending.
    indices : ndarray of int64, shape (n_queries, k)
    """
    n = data.shape[0]
    k = min(k, n)
    if metric == "l2" and data_sq_norms is None:
        data_sq_norms = np.einsum("ij,ij->i", data, data)
    chunk = max(1, int(chunk_bytes // (4 * max(n, 1))))
    out_d = np.empty((len(queries), k), dtype=np.float32)
    out_i = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sims = q @ data.T  # (chunk, n)
        if metric == "l2":
            # |q - x|^2 = |q|^2 - 2 q.x + |x|^2; the |q|^2 term does not change the order.
            sims *= -2.0
            sims += data_sq_norms[None, :]
            keys = sims
        else:
            keys = np.negative(sims, out=sims)
        if k < n:
            part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (len(q), n)).copy()
        part_keys = np.take_along_axis(keys, part, axis=1)
        order = np.argsort(part_keys, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        best = np.take_along_axis(part_keys, order, axis=1)
        if metric == "l2":
            q_sq = np.einsum("ij,ij->i", q, q)[:, None]
            dist = np.sqrt(np.maximum(best + q_sq, 0.0))
        else:
            dist = 1.0 + best  # keys are -cos
        out_d[start : start + len(q)] = dist
        out_i[start : start + len(q)] = idx
    return out_d, out_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true k nearest neighbours that the approximate search returned.

    Parameters
    ----------
    found, truth : ndarray of int, shape (n_queries, k)

    Returns
    -------
    float in [0, 1]
    """
    found, truth = np.asarray(found), np.asarray(truth)
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def _self_free_mask(indices: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Mask keeping ``k`` of the ``k + 1`` columns: the query's own row dropped, or the last."""
    is_self = indices == rows[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones(indices.shape, dtype=bool)
    keep[np.arange(len(rows)), drop] = False
    return keep


def _drop_rows(indices: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    return indices[_self_free_mask(indices, rows, k)].reshape(len(rows), k)


class NeighborIndex(BaseEstimator):
    """k-nearest-neighbour search over the rows of a matrix, exact or HNSW.

    Parameters
    ----------
    method : {"auto", "exact", "hnsw"}
    metric : {"l2", "cosine"}
    exact_max_samples : int
        With ``method="auto"``, exact search up to this many points.
    M : int
        HNSW graph degree.
    ef_construction : int
        HNSW build-time candidate list.
    ef_search : int
        HNSW query-time candidate list (the starting value when ``target_recall`` is set).
    target_recall : float or None
        If set, ``fit`` raises ``ef_search`` (doubling, up to ``max_ef_search``) until recall@10
        against exact search on ``n_tuning_queries`` indexed points reaches it.
    n_tuning_queries, max_ef_search : int
    n_jobs : int
        Threads for the HNSW build and batch queries (exact search uses BLAS's own threads).
    chunk_bytes : int
        Memory for one block of exact distances.
    random_state : int

    Attributes
    ----------
    method_ : str
        The back end chosen by ``fit``.
    n_samples_fit_, n_features_in_ : int
    build_seconds_ : float
    tuning_ : list of dict
        ``ef_search`` tried at fit time with the recall measured for each.
    """

    def __init__(
        self,
        method: str = "auto",
        metric: str = "l2",
        exact_max_samples: int = 20_000,
        M: int = 16,
        ef_construction: int = 100,
        ef_search: int = 32,
        target_recall: float | None = None,
        n_tuning_queries: int = 200,
        max_ef_search: int = 1024,
        n_jobs: int = 1,
        chunk_bytes: int = 256 * 2**20,
        random_state: int = 0,
    ):
        self.method = method
        self.metric = metric
        self.exact_max_samples = exact_max_samples
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.target_recall = target_recall
        self.n_tuning_queries = n_tuning_queries
        self.max_ef_search = max_ef_search
        self.n_jobs = n_jobs
        self.chunk_bytes = chunk_bytes
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X, y=None) -> NeighborIndex:
        """Index the rows of ``X``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        X = self._prepare(_as_float32(X))
        if len(X) == 0:
            raise ValueError("cannot index an empty matrix")
        started = time.perf_counter()
        self.n_samples_fit_, self.n_features_in_ = X.shape
        method = self.method
        if method == "auto":
            method = "exact" if len(X) <= self.exact_max_samples else "hnsw"
        self.method_ = method
        self._data = X
        self._sq_norms = np.einsum("ij,ij->i", X, X) if self.metric == "l2" else None
        self._hnsw = None
        self.ef_search_ = self.ef_search
        if method == "hnsw":
            self._hnsw = self._build_hnsw(X)
            self._hnsw.set_ef(self.ef_search_)
        self.build_seconds_ = time.perf_counter() - started
        self.tuning_ = []
        if method == "hnsw" and self.target_recall is not None:
            self._tune_ef(X)
        return self

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return _normalize(X) if self.metric == "cosine" else X

    def _build_hnsw(self, X: np.ndarray):
        import hnswlib

        space = "l2" if self.metric == "l2" else "ip"
        index = hnswlib.Index(space=space, dim=X.shape[1])
        index.init_index(
            max_elements=len(X),
            M=self.M,
            ef_construction=self.ef_construction,
            random_seed=self.random_state,
        )
        index.set_num_threads(max(1, self.n_jobs))
        index.add_items(X, np.arange(len(X)))
        return index

    def _tune_ef(self, X: np.ndarray, k: int = 10) -> None:
        # Queries are indexed rows (the app asks for neighbours of a case), so each query's own
        # row is left out of both lists: it is always found and would inflate the recall.
        k = min(k, len(X) - 1)  # a tiny index has fewer than k other rows
        if k < 1:
            return
        rng = np.random.default_rng(self.random_state)
        n_q = min(self.n_tuning_queries, len(X))
        rows = rng.choice(len(X), size=n_q, replace=False)
        _, truth = exact_kneighbors(
            X, X[rows], k + 1, metric=self.metric, data_sq_norms=self._sq_norms,
            chunk_bytes=self.chunk_bytes,
        )  # fmt: skip
        truth = _drop_rows(truth, rows, k)
        ef = max(self.ef_search, k + 1)
        while True:
            self._hnsw.set_ef(ef)
            _, found = self._query(X[rows], k + 1)
            recall = recall_at_k(_drop_rows(found, rows, k), truth)
            self.tuning_.append({"ef_search": ef, "recall_at_10": recall})
            if recall >= self.target_recall or ef >= self.max_ef_search:
                break
            ef = min(2 * ef, self.max_ef_search)
        self.ef_search_ = ef

    # -- querying ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "method_"):
            raise RuntimeError("this NeighborIndex is not fitted yet; call fit(X) first")

    def _query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n_samples_fit_)
        if self.method_ == "exact":
            return exact_kneighbors(
                self._data, queries, k, metric=self.metric, data_sq_norms=self._sq_norms,
                chunk_bytes=self.chunk_bytes,
            )  # fmt: skip
        labels, dist = self._hnsw.knn_query(queries, k=k, num_threads=max(1, self.n_jobs))
        dist = dist.astype(np.float32, copy=False)
        if self.metric == "l2":
            dist = np.sqrt(np.maximum(dist, 0.0))  # hnswlib returns squared L2
        return dist, labels.astype(np.int64, copy=False)

    def kneighbors(
        self, X=None, n_neighbors: int = 10, *, return_distance: bool = True
    ) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """The ``n_neighbors`` nearest indexed rows of each query.

        Parameters
        ----------
        X : array-like, shape (n_queries, n_features), or None
            None queries every indexed row against the others (a row is never its own
            neighbour), as in scikit-learn.
        n_neighbors : int
        return_distance : bool

        Returns
        -------
        distances : ndarray of float32, shape (n_queries, n_neighbors)
            Ascending; only when ``return_distance``.
        indices : ndarray of int64, shape (n_queries, n_neighbors)
            Row positions in the fitted matrix.
        """
        self._check_fitted()
        if X is None:
            dist, idx = self.kneighbors_of_rows(np.arange(self.n_samples_fit_), n_neighbors)
        else:
            queries = self._prepare(_as_float32(X))
            if queries.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {queries.shape[1]} features, the index has {self.n_features_in_}"
                )
            dist, idx = self._query(queries, n_neighbors)
        return (dist, idx) if return_distance else idx

    def kneighbors_of_rows(
        self, rows, n_neighbors: int = 10, *, chunk: int = 65_536
    ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of indexed rows themselves, each row left out of its own list.

        Parameters
        ----------
        rows : array-like of int, shape (n_queries,)
        n_neighbors : int
        chunk : int
            Queries per call, to bound memory.

        Returns
        -------
        distances : ndarray of float32, shape (n_queries, n_neighbors)
        indices : ndarray of int64, shape (n_queries, n_neighbors)
        """
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        k = min(n_neighbors, self.n_samples_fit_ - 1)
        out_d = np.empty((len(rows), k), dtype=np.float32)
        out_i = np.empty((len(rows), k), dtype=np.int64)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            dist, idx = self._query(self._data[part], k + 1)
            keep = _self_free_mask(idx, part, k)
            out_d[start : start + len(part)] = dist[keep].reshape(len(part), k)
            out_i[start : start + len(part)] = idx[keep].reshape(len(part), k)
        return out_d, out_i

    def vectors(self, rows) -> np.ndarray:
        """The indexed vectors of ``rows`` (normalised when ``metric="cosine"``).

        Returns
        -------
        ndarray of float32, shape (len(rows), n_features)
        """
        self._check_fitted()
        return self._data[np.asarray(rows, dtype=np.int64)]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the index into folder ``path`` (``neighbors.json``, vectors, HNSW graph)."""
        self._check_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / VECTORS_FILE, self._data)
        if self._hnsw is not None:
            self._hnsw.save_index(str(folder / HNSW_FILE))
        params = self.get_params()
        meta = {
            "params": params,
            "method_": self.method_,
            "n_samples_fit_": self.n_samples_fit_,
            "n_features_in_": self.n_features_in_,
            "ef_search_": self.ef_search_,
            "build_seconds_": self.build_seconds_,
            "tuning_": self.tuning_,
        }
        (folder / INDEX_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, path: str | Path, *, mmap: bool = True) -> NeighborIndex:
        """Read an index written by :meth:`save` (vectors memory-mapped by default)."""
        folder = Path(path)
        meta = json.loads((folder / INDEX_FILE).read_text())
        index = cls(**meta["params"])
        index.method_ = meta["method_"]
        index.n_samples_fit_ = meta["n_samples_fit_"]
        index.n_features_in_ = meta["n_features_in_"]
        index.ef_search_ = meta["ef_search_"]
        index.build_seconds_ = meta["build_seconds_"]
        index.tuning_ = meta["tuning_"]
        index._data = np.load(folder / VECTORS_FILE, mmap_mode="r" if mmap else None)
        index._sq_norms = (
            np.einsum("ij,ij->i", index._data, index._data) if index.metric == "l2" else None
        )
        index._hnsw = None
        if index.method_ == "hnsw":
            import hnswlib

            graph = hnswlib.Index(space="l2" if index.metric == "l2" else "ip",
                                  dim=index.n_features_in_)  # fmt: skip
            graph.load_index(str(folder / HNSW_FILE), max_elements=index.n_samples_fit_)
            graph.set_ef(index.ef_search_)
            graph.set_num_threads(max(1, index.n_jobs))
            index._hnsw = graph
        return index


def knn_score(neighbor_indices: np.ndarray, positive_mask: np.ndarray) -> np.ndarray:
    """Share of known positives among each case's neighbours (the kNN score).

    Parameters
    ----------
    neighbor_indices : ndarray of int, shape (n_queries, k)
        Rows of the indexed set; negative entries (no neighbour) are ignored.
    positive_mask : ndarray of bool, shape (n_samples,)
        Known positives (seeds and confirmed answers) among the indexed rows.

    Returns
    -------
    ndarray of float32, shape (n_queries,)
        In [0, 1]; 0 where a case has no neighbour.
    """
    neighbor_indices = np.asarray(neighbor_indices)
    positive_mask = np.asarray(positive_mask, dtype=bool)
    valid = neighbor_indices >= 0
    hits = positive_mask[np.where(valid, neighbor_indices, 0)] & valid
    counts = valid.sum(axis=1)
    return (hits.sum(axis=1) / np.maximum(counts, 1)).astype(np.float32)


@dataclass
class FeatureScaling:
    """Robust scaling of hand features for distances: ``(x - median) / IQR``, clipped.

    Heavy-tailed columns (amounts, counts) would otherwise decide every distance alone.

    Attributes
    ----------
    center, scale : ndarray of float32, shape (n_features,)
    clip : float
    """

    center: np.ndarray
    scale: np.ndarray
    clip: float = 5.0

    @classmethod
    def fit(cls, X, *, clip: float = 5.0) -> FeatureScaling:
        """Fit on ``X`` of shape (n_samples, n_features) (NaN ignored)."""
        X = np.asarray(X, dtype=np.float32)
        q25, q50, q75 = np.nanpercentile(X, [25, 50, 75], axis=0)
        spread = q75 - q25
        std = np.nanstd(X, axis=0)
        scale = np.where(spread > 0, spread, np.where(std > 0, std, 1.0))
        return cls(np.nan_to_num(q50).astype(np.float32), scale.astype(np.float32), clip)

    def transform(self, X) -> np.ndarray:
        """Scaled copy, shape (n_samples, n_features), NaN as the median (0)."""
        Z = (np.asarray(X, dtype=np.float32) - self.center) / self.scale
        return np.clip(np.nan_to_num(Z, nan=0.0), -self.clip, self.clip).astype(np.float32)

    def to_json(self) -> dict:
        return {"center": self.center.tolist(), "scale": self.scale.tolist(), "clip": self.clip}

    @classmethod
    def from_json(cls, data: dict) -> FeatureScaling:
        return cls(
            np.asarray(data["center"], dtype=np.float32),
            np.asarray(data["scale"], dtype=np.float32),
            float(data["clip"]),
        )


def neighbor_matrix(
    embeddings: np.ndarray | None,
    hand_features: np.ndarray | None,
    *,
    scaling: FeatureScaling | None = None,
    hand_weight: float = 1.0,
) -> tuple[np.ndarray, FeatureScaling | None]:
    """The space the index searches: embeddings beside robustly scaled hand features.

    Each block is brought to a comparable overall size: embeddings are divided by their mean row
    norm, hand features (after scaling) by ``sqrt(n_features)``, times ``hand_weight``.

    Parameters
    ----------
    embeddings : ndarray, shape (n_samples, n_dims), or None
    hand_features : ndarray, shape (n_samples, n_features), or None
    scaling : FeatureScaling, optional
        Reuse a fitted scaling (else fitted on ``hand_features``).
    hand_weight : float

    Returns
    -------
    matrix : ndarray of float32, shape (n_samples, n_dims + n_features)
    scaling : FeatureScaling or None
    """
    blocks = []
    if embeddings is not None:
        E = np.asarray(embeddings, dtype=np.float32)
        norm = float(np.linalg.norm(E[: min(len(E), 100_000)], axis=1).mean()) or 1.0
        blocks.append(E / norm)
    if hand_features is not None and np.asarray(hand_features).shape[1] > 0:
        H = np.asarray(hand_features, dtype=np.float32)
        scaling = scaling or FeatureScaling.fit(H)
        blocks.append(scaling.transform(H) * (hand_weight / np.sqrt(H.shape[1])))
    if not blocks:
        raise ValueError("neither embeddings nor hand features were given")
    return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32), scaling


def differing_features(
    case: np.ndarray, others: np.ndarray, names: list[str], *, top: int = 3
) -> list[list[tuple[str, float]]]:
    """For each of ``others``, the features that differ most from ``case`` (scaled units).

    Parameters
    ----------
    case : ndarray, shape (n_features,)
        Scaled hand features of one case (``FeatureScaling.transform``).
    others : ndarray, shape (n_others, n_features)
    names : list of str, length n_features
    top : int

    Returns
    -------
    list (n_others) of lists of (name, signed difference other - case), largest first
    """
    diff = np.asarray(others, dtype=np.float32) - np.asarray(case, dtype=np.float32)[None, :]
    order = np.argsort(-np.abs(diff), axis=1, kind="stable")[:, :top]
    return [[(names[j], float(diff[i, j])) for j in row] for i, row in enumerate(order)]
