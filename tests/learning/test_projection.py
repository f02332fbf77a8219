"""The case map's library side: the stratified sample and the 2-D projection."""

from __future__ import annotations

import numpy as np
import pytest

from learning.projection import (
    UMAP_MIN_CASES,
    group_counts,
    project_2d,
    standardize,
    stratified_sample,
)


def pool(n_u: int = 100_000, n_p: int = 300, n_conf: int = 40, n_not: int = 60, n_batch: int = 100):
    states = np.array(
        ["U"] * n_u + ["P"] * n_p + ["confirmed"] * n_conf + ["not_confirmed"] * n_not, dtype="<U13"
    )
    in_batch = np.zeros(len(states), dtype=bool)
    in_batch[:n_batch] = True  # the batch: open cases, still U here
    states[:n_batch] = "shown"
    return states, in_batch


def test_the_sample_holds_every_rare_group_whole_and_fills_up_with_the_rest():
    states, in_batch = pool()
    rows = stratified_sample(states, in_batch, 5000, random_state=0)
    assert len(rows) == 5000 and len(np.unique(rows)) == 5000
    assert np.all(np.diff(rows) > 0)
    counts = group_counts(states[rows], in_batch[rows])
    assert counts["P"] == 300 and counts["confirmed"] == 40 and counts["not_confirmed"] == 60
    assert counts["batch"] == 100
    assert counts["U"] == 5000 - 500


def test_large_priority_groups_share_half_of_the_sample_and_all_are_present():
    states, in_batch = pool(n_u=50_000, n_p=20_000, n_conf=30, n_not=4000, n_batch=200)
    rows = stratified_sample(states, in_batch, 1000, random_state=1)
    counts = group_counts(states[rows], in_batch[rows])
    assert len(rows) == 1000
    # Half of the sample for the four groups: the small ones whole, the large ones share the rest.
    assert counts["confirmed"] == 30
    assert {counts["batch"], counts["P"], counts["not_confirmed"]} <= {156, 157}
    assert counts["P"] + counts["confirmed"] + counts["not_confirmed"] + counts["batch"] == 500
    assert counts["U"] == 500


def test_without_enough_rest_the_priority_groups_fill_the_sample():
    states, in_batch = pool(n_u=200, n_p=5000, n_conf=10, n_not=10, n_batch=0)
    rows = stratified_sample(states, in_batch, 1000, random_state=0)
    counts = group_counts(states[rows], in_batch[rows])
    assert len(rows) == 1000 and counts["U"] == 200 and counts["confirmed"] == 10


def test_the_sample_is_all_cases_when_few_and_repeatable_with_a_seed():
    states, in_batch = pool(n_u=50, n_p=5, n_conf=0, n_not=0, n_batch=0)
    assert stratified_sample(states, in_batch, 5000).tolist() == list(range(55))
    states, in_batch = pool()
    a = stratified_sample(states, in_batch, 2000, random_state=7)
    b = stratified_sample(states, in_batch, 2000, random_state=7)
    c = stratified_sample(states, in_batch, 2000, random_state=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="differ in shape"):
        stratified_sample(states, in_batch[:-1], 10)


def test_standardize_centres_scales_and_fills_missing_values():
    X = np.array([[1.0, 10.0, 5.0], [3.0, np.nan, 5.0], [5.0, 30.0, 5.0], [np.inf, 20.0, 5.0]])
    Z = standardize(X)
    assert Z.dtype == np.float32 and np.isfinite(Z).all()
    assert np.allclose(Z[:3, 0].mean(), 0.0, atol=1e-6) and np.isclose(Z[:3, 0].std(), 1.0)
    assert Z[1, 1] == 0.0 and Z[3, 0] == 0.0  # missing -> the column's mean
    assert np.all(Z[:, 2] == 0.0)  # a constant column


def clusters(n_per: int, dim: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(3, dim))
    labels = np.repeat(np.arange(3), n_per)
    return (centres[labels] + rng.normal(size=(3 * n_per, dim))).astype(np.float32), labels


def _neighbour_agreement(xy: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def test_umap_keeps_planted_clusters_apart_in_the_unit_square():
    X, labels = clusters(150)
    projection = project_2d(X, random_state=0)
    assert projection.method == "umap"
    xy = projection.xy
    assert xy.shape == (450, 2) and xy.min() >= 0.0 and xy.max() <= 1.0
    assert _neighbour_agreement(xy, labels) > 0.97
    again = project_2d(X, random_state=0).xy
    assert np.allclose(xy, again)


def test_tiny_samples_fall_back_to_pca():
    X, labels = clusters(10)
    assert len(X) < UMAP_MIN_CASES
    projection = project_2d(X)
    assert projection.method == "pca"
    assert _neighbour_agreement(projection.xy, labels, k=3) > 0.95
    assert project_2d(X[:1]).xy.shape == (1, 2)
    with pytest.raises(ValueError, match="NaN"):
        project_2d(np.array([[np.nan, 1.0]] * 3))
