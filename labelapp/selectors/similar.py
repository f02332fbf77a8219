"""Reads about similar cases: the current model's neighbour index and a case's neighbours."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from labelapp.models import Case, ModelVersion, PoolState
from labelapp.selectors.datasets import snapshot_dir_for
from learning.knn_feature import DEFAULT_N_NEIGHBORS
from learning.neighbors import NeighborIndex, differing_features, exact_kneighbors

SPACE_FILE = "space.json"
#: Neighbours behind the kNN score (share of known positives among them).
KNN_K = DEFAULT_N_NEIGHBORS
#: Known positives: the rule's seeds and the experts' confirmations.
POSITIVE_STATES = (PoolState.POSITIVE, PoolState.CONFIRMED)


def neighbor_dir(version: ModelVersion) -> Path:
    return Path(version.artifact_dir) / "neighbors"


def neighbor_inputs(version: ModelVersion) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """What the index of ``version`` is built on, in case-row order.

    Returns
    -------
    hand : ndarray of float32, shape (n_cases, n_hand)
        The dataset's numeric case columns from its snapshot.
    names : list of str, length n_hand
    embeddings : ndarray, shape (n_cases, dim), or None
        The embeddings the model was trained with (``inputs.json`` names the file), if any.
    """
    import pyarrow.parquet as pq

    dataset = version.dataset
    snapshot = snapshot_dir_for(dataset)
    path = snapshot / "cases.parquet"
    available = set(pq.read_schema(path).names)
    numeric = (dataset.schema or {}).get("cases", {}).get("numeric") or dataset.feature_columns
    names = [c for c in numeric if c in available]
    frame = pq.read_table(path, columns=[*names, *(["row"] if "row" in available else [])])
    frame = frame.to_pandas()
    if "row" in frame.columns:
        frame = frame.sort_values("row", kind="stable")
    hand = frame[names].to_numpy(dtype=np.float32)
    embeddings = None
    inputs = Path(version.artifact_dir) / "inputs.json"
    emb_path = json.loads(inputs.read_text()).get("embeddings") if inputs.exists() else None
    if emb_path and Path(emb_path).exists():
        embeddings = np.load(emb_path, mmap_mode="r")
    return hand, names, embeddings


@lru_cache(maxsize=4)
def load_neighbor_index(folder: str) -> tuple[NeighborIndex, dict]:
    """The index in ``folder`` and its ``space.json`` (cached per process)."""
    path = Path(folder)
    return NeighborIndex.load(path), json.loads((path / SPACE_FILE).read_text())


def current_index(case: Case) -> tuple[NeighborIndex, dict] | None:
    """The neighbour index of the case's dataset's current model, or None if not built."""
    version = case.dataset.current_model
    if version is None:
        return None
    folder = neighbor_dir(version)
    if not (folder / SPACE_FILE).exists():
        return None
    return load_neighbor_index(str(folder))


@dataclass
class Found:
    """Neighbours of one case: dataset rows and distances, nearest first."""

    rows: np.ndarray
    distances: np.ndarray


def case_neighbors(case: Case, *, n_neighbors: int) -> Found:
    """The ``n_neighbors`` nearest cases of ``case`` (itself left out) in the current index.

    Raises
    ------
    FileNotFoundError
        No neighbour index for the dataset's current model.
    """
    loaded = current_index(case)
    if loaded is None:
        raise FileNotFoundError("the current model has no neighbour index yet")
    index, _ = loaded
    dist, idx = index.kneighbors_of_rows([case.row], n_neighbors)
    return Found(idx[0], dist[0])


@dataclass
class SimilarCase:
    case: Case
    distance: float
    differs: list[tuple[str, float]]


@dataclass
class SimilarPanel:
    """What the case page's similar-cases panel shows."""

    available: bool
    message: str = ""
    knn_score: float | None = None
    knn_k: int = KNN_K
    confirmed: list[SimilarCase] = field(default_factory=list)
    not_confirmed: list[SimilarCase] = field(default_factory=list)
    method: str = ""


def _hand_block(vectors: np.ndarray, space: dict) -> np.ndarray:
    start = int(space["hand_offset"])
    stop = start + len(space["hand_features"])
    return np.asarray(vectors[:, start:stop], dtype=np.float32) / float(space["hand_factor"])


def _nearest_of(case: Case, index: NeighborIndex, space: dict, rows: list[int], k: int):
    rows = [r for r in rows if r != case.row]
    if not rows:
        return []
    rows_arr = np.asarray(sorted(rows), dtype=np.int64)
    query = index.vectors([case.row])
    vectors = np.ascontiguousarray(index.vectors(rows_arr))
    dist, idx = exact_kneighbors(vectors, query, k, metric=index.metric)
    chosen = rows_arr[idx[0]]
    differs = differing_features(
        _hand_block(query, space)[0], _hand_block(vectors[idx[0]], space), space["hand_features"]
    )
    shown = Case.objects.with_shown_scores(case.dataset)
    by_row = {c.row: c for c in shown.filter(dataset=case.dataset, row__in=chosen.tolist())}
    return [
        SimilarCase(by_row[int(r)], float(d), diff)
        for r, d, diff in zip(chosen, dist[0], differs, strict=True)
        if int(r) in by_row
    ]


def similar_cases(case: Case, *, k: int = 5) -> SimilarPanel:
    """The ``k`` most similar known positives and "not confirmed" cases, and the kNN score."""
    loaded = current_index(case)
    if loaded is None:
        reason = (
            "No model yet." if case.dataset.current_model is None
            else "The neighbour index of the current model is not built yet."
        )  # fmt: skip
        return SimilarPanel(available=False, message=reason)
    index, space = loaded
    if case.row >= index.n_samples_fit_:
        return SimilarPanel(available=False, message="This case is newer than the index.")
    found = case_neighbors(case, n_neighbors=KNN_K)
    near_states = dict(
        Case.objects.filter(dataset=case.dataset, row__in=found.rows.tolist()).values_list(
            "row", "pool_state"
        )
    )
    positives = sum(near_states.get(int(r)) in POSITIVE_STATES for r in found.rows)
    states = Case.objects.filter(dataset=case.dataset)
    positive_rows = list(
        states.filter(pool_state__in=POSITIVE_STATES).values_list("row", flat=True)
    )
    not_confirmed_rows = list(
        states.filter(pool_state=PoolState.NOT_CONFIRMED).values_list("row", flat=True)
    )
    return SimilarPanel(
        available=True,
        knn_score=positives / max(len(found.rows), 1),
        knn_k=len(found.rows),
        confirmed=_nearest_of(case, index, space, positive_rows, k),
        not_confirmed=_nearest_of(case, index, space, not_confirmed_rows, k),
        method=f"{space['method']} over {space['n_cases']:,} cases"
        + (
            f", embeddings ({space['embedding_dim']}) + hand features"
            if space["embedding_dim"]
            else ", hand features"
        ),  # fmt: skip
    )
