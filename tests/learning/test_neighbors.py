"""The neighbour index: right answers on tiny sets with known distances, both back ends."""

from __future__ import annotations

import numpy as np
import pytest

from learning.neighbors import (
    FeatureScaling,
    NeighborIndex,
    differing_features,
    exact_kneighbors,
    knn_score,
    neighbor_matrix,
    recall_at_k,
)

# Five points on a line: distances are the differences of the coordinates.
LINE = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0], [15.0, 0.0]], dtype=np.float32)


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_neighbors_on_a_line_have_the_known_distances(method):
    index = NeighborIndex(method=method, ef_search=16).fit(LINE)
    dist, idx = index.kneighbors(np.array([[2.0, 0.0], [14.0, 0.0]]), 3)
    assert idx.tolist() == [[1, 2, 0], [4, 3, 2]]
    np.testing.assert_allclose(dist, [[1.0, 1.0, 2.0], [1.0, 7.0, 11.0]], atol=1e-5)


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_a_case_is_never_its_own_neighbor(method):
    index = NeighborIndex(method=method).fit(LINE)
    dist, idx = index.kneighbors(None, 2)
    assert idx.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1], [3, 2]]
    np.testing.assert_allclose(dist[3], [4.0, 6.0], atol=1e-5)
    assert not (idx == np.arange(len(LINE))[:, None]).any()


def test_cosine_distance_is_one_minus_cosine_similarity():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]], dtype=np.float32)
    dist, idx = NeighborIndex(method="exact", metric="cosine").fit(X).kneighbors([[2.0, 0.0]], 4)
    assert idx[0].tolist() == [0, 2, 1, 3]
    np.testing.assert_allclose(dist[0], [0.0, 1 - np.sqrt(0.5), 1.0, 2.0], atol=1e-6)


def test_exact_search_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    Q = rng.normal(size=(37, 8)).astype(np.float32)
    full = np.linalg.norm(Q[:, None, :] - X[None, :, :], axis=2)
    expected = np.argsort(full, axis=1)[:, :5]
    # A tiny memory budget forces one query per chunk.
    dist, idx = exact_kneighbors(X, Q, 5, chunk_bytes=1)
    assert (idx == expected).all()
    np.testing.assert_allclose(dist, np.take_along_axis(full, expected, axis=1), rtol=1e-4)


def test_hnsw_tuning_reaches_the_target_recall_and_saves_and_loads(tmp_path):
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=5, size=(20, 16))
    X = (centers[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16))).astype(np.float32)
    index = NeighborIndex(method="hnsw", ef_search=10, target_recall=0.97, M=8).fit(X)
    assert index.tuning_[-1]["recall_at_10"] >= 0.97
    rows = rng.choice(len(X), 100, replace=False)
    _, truth = NeighborIndex(method="exact").fit(X).kneighbors_of_rows(rows, 10)
    _, found = index.kneighbors_of_rows(rows, 10)
    assert recall_at_k(found, truth) >= 0.9
    loaded = NeighborIndex.load(index.save(tmp_path / "idx"))
    assert loaded.method_ == "hnsw" and loaded.ef_search_ == index.ef_search_
    assert (loaded.kneighbors_of_rows(rows, 10)[1] == found).all()


def test_auto_method_is_exact_for_small_data_and_hnsw_above_the_threshold():
    X = np.random.default_rng(2).normal(size=(300, 4)).astype(np.float32)
    assert NeighborIndex(exact_max_samples=1000).fit(X).method_ == "exact"
    assert NeighborIndex(exact_max_samples=100).fit(X).method_ == "hnsw"


def test_knn_score_is_the_share_of_positives_among_neighbors():
    neighbors = np.array([[0, 1, 2, 3], [2, 3, -1, -1], [-1, -1, -1, -1]])
    positive = np.array([True, False, True, False])
    np.testing.assert_allclose(knn_score(neighbors, positive), [0.5, 0.5, 0.0])


def test_knn_score_ranks_cases_inside_a_positive_cluster_first():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (200, 3)), rng.normal(6, 1, (40, 3))]).astype(np.float32)
    positive = np.zeros(240, dtype=bool)
    positive[200:220] = True  # half of the far cluster is known
    _, idx = NeighborIndex(method="exact").fit(X).kneighbors(None, 10)
    score = knn_score(idx, positive)
    assert score[220:].min() > score[:200].max()


def test_scaling_tames_heavy_tails_and_differing_features_names_the_gap():
    H = np.array([[1, 10], [2, 11], [3, 12], [4, 13], [1000, 12]], dtype=np.float32)
    scaling = FeatureScaling.fit(H)
    Z = scaling.transform(H)
    assert np.abs(Z).max() <= scaling.clip
    M, fitted = neighbor_matrix(None, H)
    assert M.shape == (5, 2) and FeatureScaling.from_json(fitted.to_json()).clip == fitted.clip
    diffs = differing_features(Z[0], Z[[4]], ["amount", "count"], top=1)
    assert diffs[0][0][0] == "amount" and diffs[0][0][1] > 0
