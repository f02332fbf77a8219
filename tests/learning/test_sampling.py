import numpy as np
import pytest

from learning.sampling import (
    BatchSelection,
    random_batch,
    select_batch,
    top_score_batch,
    uncertainty_batch,
    uncertainty_scores,
)


def blobs(seed=0, per_blob=200, k=5):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-20, 20, size=(k, 3))
    X = np.vstack([c + rng.randn(per_blob, 3) for c in centers])
    blob = np.repeat(np.arange(k), per_blob)
    return X, blob, rng


def test_every_cluster_is_represented():
    X, blob, rng = blobs()
    # One blob is far more uncertain than the rest: without diversity it would take the batch.
    scores = np.where(blob == 0, 0.5, rng.uniform(0.3, 0.45, len(blob)))
    batch = select_batch(
        scores, X, 20, pool_size=len(X), n_clusters=5, uncertainty="margin", random_state=0
    )
    assert isinstance(batch, BatchSelection) and len(batch) == 20
    assert set(blob[batch.indices]) == set(range(5))
    assert set(batch.cluster) == set(range(5))
    # Round robin: each cluster's most uncertain case comes before any cluster's second.
    assert list(batch.rank_in_cluster[:5]) == [0] * 5
    plain = uncertainty_batch(scores, X, 20, uncertainty="margin", random_state=0)
    assert set(blob[plain]) == {0}


def test_batch_is_most_uncertain_within_cluster_and_aligned():
    X, blob, rng = blobs(1)
    scores = rng.uniform(0, 1, len(X))
    batch = select_batch(scores, X, 10, n_clusters=5, uncertainty="margin", random_state=0)
    u = uncertainty_scores(scores, kind="margin")
    np.testing.assert_allclose(batch.uncertainty, u[batch.indices])
    assert len(batch.reason) == len(batch.indices) == len(batch.cluster)
    assert len(set(batch.indices)) == len(batch.indices)
    # Every pick is among the pool of the most uncertain (default pool_size = 10 * n).
    cutoff = np.sort(u)[::-1][10 * 10 - 1]
    assert (u[batch.indices] >= cutoff).all()


def test_candidate_mask_and_top_score_share():
    X, _, rng = blobs(2)
    scores = rng.uniform(0, 1, len(X))
    mask = np.ones(len(X), bool)
    mask[np.argsort(-scores)[:10]] = False  # the 10 best were shown already
    batch = select_batch(
        scores, X, 20, candidate_mask=mask, top_score_share=0.5, n_clusters=4, random_state=0
    )
    assert mask[batch.indices].all()
    top = batch.indices[batch.cluster == -1]
    assert len(top) == 10
    np.testing.assert_array_equal(top, np.argsort(-scores)[10:20])
    assert all(r.startswith("top score") for r in np.asarray(batch.reason)[batch.cluster == -1])


def test_threshold_uncertainty_defaults_to_top_fraction_boundary():
    scores = np.linspace(0, 1, 1001)
    u = uncertainty_scores(scores, kind="threshold", threshold=0.99)
    assert np.argmax(u) == 990
    picked = uncertainty_batch(scores, None, 5, top_fraction=0.01, random_state=0)
    assert set(picked) <= set(range(985, 996))
    ent = uncertainty_scores(np.array([0.0, 0.5, 1.0]), kind="entropy")
    np.testing.assert_allclose(ent, [0, 1, 0], atol=1e-9)
    with pytest.raises(ValueError):
        uncertainty_scores(scores, kind="threshold")


def test_baselines_and_determinism():
    X, _, rng = blobs(3)
    scores = rng.uniform(0, 1, len(X))
    np.testing.assert_array_equal(top_score_batch(scores, X, 5), np.argsort(-scores)[:5])
    a = random_batch(scores, X, 30, random_state=7)
    assert len(set(a)) == 30
    np.testing.assert_array_equal(a, random_batch(scores, X, 30, random_state=7))
    b1 = select_batch(scores, X, 25, n_clusters=5, random_state=5)
    b2 = select_batch(scores, X, 25, n_clusters=5, random_state=5)
    np.testing.assert_array_equal(b1.indices, b2.indices)
    np.testing.assert_array_equal(b1.cluster, b2.cluster)


def test_reasons_state_the_threshold_used_and_the_uncertainty_measured():
    """PU scores of rare positives crowd near 0: the top-1% threshold is tiny. The reasons must
    name it readably (not "0.0000") and show the uncertainty the batch was chosen by."""
    rng = np.random.RandomState(4)
    scores = np.concatenate([rng.uniform(1e-7, 1e-4, 4990), rng.uniform(0.3, 0.99, 10)])
    X = rng.randn(len(scores), 3)
    batch = select_batch(scores, X, 20, n_clusters=3, top_score_share=0.3, random_state=0)
    threshold = np.quantile(scores, 0.99)
    assert batch.threshold == pytest.approx(threshold)
    assert batch.threshold_rule == "the score at the top 1% of all cases"
    shown = f"{threshold:.2e}"
    uncertain = [r for r, c in zip(batch.reason, batch.cluster, strict=True) if c >= 0]
    assert uncertain and all(
        f"selection threshold {shown} (the top-1% score)" in r for r in uncertain
    )
    assert not any("0.0000" in r for r in batch.reason)
    assert all(len(r) <= 200 for r in batch.reason)  # BatchItem.reason holds 200 characters
    top = [r for r, c in zip(batch.reason, batch.cluster, strict=True) if c == -1]
    assert len(top) == 6 and all(r.startswith("top score ") and "not clustered" in r for r in top)
    # The measure the batch used is the one shown: linear closeness to the threshold.
    u = uncertainty_scores(np.array([threshold, 0.5, 1.0]), threshold=threshold)
    np.testing.assert_allclose(u[0], 1.0)
    assert u[2] == pytest.approx(0.0) and 0.4 < u[1] < 0.6
    np.testing.assert_allclose(
        batch.uncertainty, uncertainty_scores(scores, threshold=threshold)[batch.indices]
    )


def test_random_share_adds_random_candidates_after_the_rest_and_zero_changes_nothing():
    from learning.sampling import RANDOM_CLUSTER

    X, _, rng = blobs(3)
    scores = rng.uniform(0, 1, len(X))
    mask = np.ones(len(X), bool)
    mask[:50] = False
    kwargs = dict(candidate_mask=mask, top_score_share=0.5, n_clusters=4, random_state=0)
    plain = select_batch(scores, X, 20, **kwargs)
    np.testing.assert_array_equal(
        select_batch(scores, X, 20, random_share=0.0, **kwargs).indices, plain.indices
    )
    batch = select_batch(scores, X, 20, random_share=0.2, **kwargs)
    assert len(batch.indices) == 20 and len(set(batch.indices.tolist())) == 20
    assert mask[batch.indices].all()
    random = batch.cluster == RANDOM_CLUSTER
    assert random.sum() == 4 and random[-4:].all()  # the random part comes last
    assert (batch.cluster == -1).sum() == 10  # the top-score part keeps its share
    assert all("at random" in r for r in np.asarray(batch.reason)[random])


def test_random_part_is_half_uniform_half_at_a_log_uniform_rank():
    from learning.sampling import RANDOM_RANK_REASON, RANDOM_REASON, random_part

    scores = np.linspace(1.0, 0.0, 10_000)  # case i has rank i
    left = np.arange(10_000)
    rng = np.random.RandomState(0)
    picks, reasons = random_part(left, scores, 3, rng)
    assert reasons == [RANDOM_REASON] * 2 + [RANDOM_RANK_REASON]
    assert len(set(picks.tolist())) == 3
    single, reasons = random_part(left, scores, 1, rng)
    assert len(single) == 1 and reasons == [RANDOM_REASON]
    # Over many draws the log-uniform half spreads evenly over the orders of magnitude of the
    # rank (each decade 1/4 of the picks here), the uniform half lands mostly in the bottom 90%.
    ranks = {RANDOM_REASON: [], RANDOM_RANK_REASON: []}
    for _ in range(2000):
        picks, reasons = random_part(left, scores, 2, rng)
        for p, r in zip(picks, reasons, strict=True):
            ranks[r].append(p)
    log_ranks = np.asarray(ranks[RANDOM_RANK_REASON])
    decades = np.histogram(log_ranks, bins=[0, 10, 100, 1000, 10_000])[0] / len(log_ranks)
    np.testing.assert_allclose(decades, 0.25, atol=0.04)
    assert np.mean(np.asarray(ranks[RANDOM_REASON]) >= 1000) > 0.85
    # Never more than the cases left, never one twice.
    few, _ = random_part(left[:3], scores, 5, rng)
    assert sorted(few.tolist()) == [0, 1, 2]
