"""The kNN feature: share of known positives among each case's neighbours, itself left out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from learning.featurespec import FeatureSpec, build_matrix
from learning.knn_feature import KNN_FEATURE, knn_index, knn_positive_share, knn_space
from learning.pu import TwoStepPU

# Two groups on a line, distances all different: 0, 1, 3 and 20, 22, 25.
POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [20.0, 0.0], [22.0, 0.0], [25.0, 0.0]])
POSITIVE = np.array([True, True, False, True, False, False])


@pytest.mark.parametrize("method", ["exact", "hnsw"])
def test_share_counts_the_neighbors_and_never_the_case_itself(method):
    index = knn_index(POINTS, method=method)
    seen = []
    share = knn_positive_share(
        index, POSITIVE, n_neighbors=2, progress=lambda done, total: seen.append((done, total))
    )
    # Row 0's neighbours are rows 1 (positive) and 2; counting itself it would be 1.0.
    # Row 3 is a positive among two unlabeled neighbours: 0, not 1/3.
    np.testing.assert_allclose(share, [0.5, 0.5, 1.0, 0.0, 0.5, 0.5])
    assert share.dtype == np.float32 and seen[-1] == (6, 6)


def test_auto_index_is_exact_small_and_hnsw_large_with_the_same_shares():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (300, 4)), rng.normal(6, 1, (300, 4))]).astype(np.float32)
    positive = np.zeros(600, dtype=bool)
    positive[rng.choice(300, 60, replace=False)] = True  # only the first cluster has positives
    exact = knn_index(X)
    hnsw = knn_index(X, exact_max_samples=100)
    assert (exact.method_, hnsw.method_) == ("exact", "hnsw")
    a = knn_positive_share(exact, positive)
    b = knn_positive_share(hnsw, positive)
    assert np.abs(a - b).mean() < 0.01
    assert a[300:].max() == 0.0 and a[:300].mean() == pytest.approx(0.2, abs=0.03)


def test_space_is_the_embeddings_when_given_else_scaled_hand_features():
    emb = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    hand = np.array([[1.0, 1000.0], [2.0, np.nan], [3.0, 3000.0]])
    assert knn_space(emb, hand).shape == (3, 2)
    np.testing.assert_allclose(knn_space(emb, hand)[:, 1] / knn_space(emb, hand)[0, 1], [1, 2, 3])
    scaled = knn_space(None, hand)
    assert np.isfinite(scaled).all() and np.abs(scaled).max() < 10  # no column dominates
    with pytest.raises(ValueError, match="embeddings or numeric"):
        knn_space(None, np.zeros((3, 0)))
    with pytest.raises(ValueError, match="shape"):
        knn_positive_share(knn_index(POINTS), POSITIVE[:3])


def test_spec_appends_the_column_reads_it_from_the_cases_and_says_when_it_is_missing():
    spec = FeatureSpec(numeric_columns=["amount"], knn_neighbors=10)
    assert spec.feature_names == ["amount", KNN_FEATURE] and spec.version == 2
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec and '"version": 2' in spec.to_json()
    plain = FeatureSpec(numeric_columns=["amount"])
    assert '"version": 1' in plain.to_json() and "knn" not in plain.to_json()
    cases = pd.DataFrame({"amount": [1.0, 2.0], KNN_FEATURE: [0.3, 0.0]})
    np.testing.assert_allclose(build_matrix(spec, cases), [[1.0, 0.3], [2.0, 0.0]])
    with pytest.raises(ValueError, match=f"lack columns.*{KNN_FEATURE}.*10 nearest neighbours"):
        build_matrix(spec, cases.drop(columns=[KNN_FEATURE]))
    with pytest.raises(ValueError, match="newer than this code"):
        FeatureSpec.from_json('{"version": 4}')


def test_two_step_pu_uses_the_share_when_positives_cluster():
    """Positives hide in a region no single column shows; the share points at the region."""
    rng = np.random.default_rng(1)
    n = 3000
    space = rng.normal(0, 1, (n, 8)).astype(np.float32)
    truth = np.linalg.norm(space[:, :4] - 1.5, axis=1) < 2.0  # a ball in the embedding space
    labeled = truth & (rng.random(n) < 0.4)
    share = knn_positive_share(knn_index(space), labeled)
    noise = rng.normal(0, 1, (n, 3)).astype(np.float32)  # hand features that know nothing
    X = np.column_stack([noise, share])
    model = TwoStepPU(n_estimators=40, n_estimators_em=20, n_jobs=1, random_state=0)
    model.fit(X, labeled.astype(int))
    gains = model.booster_.feature_importance(importance_type="gain")
    assert gains.argmax() == 3
    scores = model.predict_proba(X)[:, 1]
    hidden = truth & ~labeled
    assert np.median(scores[hidden]) > np.quantile(scores[~truth], 0.75)
