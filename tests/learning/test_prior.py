"""The estimate of positives left in U (learning.prior) and the stop it feeds."""

import numpy as np
import pytest

from learning.prior import PositivesLeft, positives_left, rank_share
from learning.stopping import stopping_signals


def _population(rng, n: int, prior: float = 0.04):
    """Cases with a label and an imperfect score: positives score higher on average."""
    y = rng.rand(n) < prior
    scores = 1.0 / (1.0 + np.exp(-(2.5 * y + rng.randn(n) - 3.0)))
    return scores, y


def _planted(seed: int, *, n_batches: int = 8, recall: float = 1.0):
    """U with a known number of positives, and batches (half top, half random) answered from
    the same population, as the loop draws them."""
    rng = np.random.RandomState(seed)
    scores_u, y_u = _population(rng, 4000)
    batch_scores, batch_confirmed = [], []
    for _ in range(n_batches):
        pool_scores, pool_y = _population(rng, 4000)
        top = np.argsort(-pool_scores)[:10]
        drawn = rng.choice(np.setdiff1d(np.arange(4000), top), 10, replace=False)
        picked = np.concatenate([top, drawn])
        batch_scores.append(pool_scores[picked])
        batch_confirmed.append(pool_y[picked] & (rng.rand(20) < recall))
    return scores_u, int(y_u.sum()), batch_scores, batch_confirmed


def test_interval_covers_the_planted_positives():
    covered, within_2x = 0, 0
    for seed in range(10):
        scores_u, truth, bs, bc = _planted(seed)
        est = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
        assert est.method == "isotonic" and est.low <= est.point <= est.high
        covered += est.low <= truth <= est.high
        within_2x += truth / 2 <= est.point <= 2 * truth
    assert covered >= 8 and within_2x >= 8


def test_the_old_sum_of_scores_misses_by_far_where_the_estimate_does_not():
    # The old estimate (U's scores summed) is only as right as the scores' calibration: squeeze
    # the scores toward 0 like a PU fit does and it collapses; the rank-based estimate does not.
    scores_u, truth, bs, bc = _planted(0)
    squeeze = lambda s: s**6  # noqa: E731 - same order, other scale
    est = positives_left(
        squeeze(scores_u),
        batch_scores=[squeeze(s) for s in bs],
        batch_confirmed=bc,
        random_state=0,
    )
    assert squeeze(scores_u).sum() < truth / 5
    assert truth / 2 <= est.point <= 2 * truth


def test_expert_recall_scales_the_estimate_up():
    scores_u, _, bs, bc = _planted(1, recall=0.5)
    full = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
    half = positives_left(
        scores_u, batch_scores=bs, batch_confirmed=bc, expert_recall=0.5, random_state=0
    )
    # Twice, less what the cap at probability 1 takes off.
    assert 1.6 * full.point <= half.point <= 2 * full.point + 1e-9


def test_logistic_curve_also_covers():
    scores_u, truth, bs, bc = _planted(2)
    est = positives_left(
        scores_u, batch_scores=bs, batch_confirmed=bc, method="logistic", n_bootstrap=50
    )
    assert est.method == "logistic" and est.low <= truth <= est.high


def test_answers_above_all_of_U_do_not_set_its_top_rate():
    # Every confirmed case outscores all of U; every answered case inside U's range was a
    # negative: nothing says U's top holds positives.
    rng = np.random.RandomState(0)
    scores_u = rng.rand(1000) * 0.5
    bs = [np.r_[np.full(10, 0.9), rng.rand(10) * 0.5] for _ in range(5)]
    bc = [np.r_[np.ones(10, bool), np.zeros(10, bool)] for _ in range(5)]
    est = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
    assert est.point < 1.0 and est.low == 0.0


def test_answers_without_a_confirmation_do_not_prove_zero():
    # 100 random answers from 10,000 cases, none confirmed: the rate could still be ~2%
    # (rule of three: up to 3/100). Resampling zeros gives zeros; the interval must not.
    rng = np.random.RandomState(0)
    scores_u = rng.rand(10_000)
    bs = [rng.rand(20) for _ in range(5)]
    bc = [np.zeros(20, bool) for _ in range(5)]
    est = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
    assert est.point == 0.0 and est.low == 0.0
    assert 30 <= est.high <= 400


def test_rank_share_places_values_from_the_top():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(rank_share(ref, [0.4, 0.9, 0.0]), [1 / 5, 0.5 / 5, 4.5 / 5])


def test_no_answers_and_bad_inputs():
    est = positives_left(np.random.rand(50), batch_scores=[], batch_confirmed=[])
    assert est.method == "none" and np.isnan(est.point) and (est.low, est.high) == (0.0, 50.0)
    with pytest.raises(ValueError, match="one answer per score"):
        positives_left(np.random.rand(50), batch_scores=[np.ones(3)], batch_confirmed=[[True]])
    with pytest.raises(ValueError, match="expert_recall"):
        positives_left(
            np.random.rand(5), batch_scores=[[0.5]], batch_confirmed=[[True]], expert_recall=0
        )
    with pytest.raises(ValueError, match="method"):
        positives_left(
            np.random.rand(5), batch_scores=[[0.5]], batch_confirmed=[[True]], method="tice"
        )


def _estimate(point: float, low: float, high: float) -> PositivesLeft:
    return PositivesLeft(point, low, high, "isotonic", 0.9, 1000, 40, 2)


def test_no_stop_while_the_last_batch_still_confirms_five_percent():
    # The demo of issue 14: one batch confirmed 2 of 20 and the old estimate said "stop".
    signals = stopping_signals([2], [20], positives_left=_estimate(0.04, 0.0, 0.5))
    assert not signals.suggest_stop
    assert "keep going" in signals.reason and "10%" in signals.reason
    assert signals.estimated_positives_left == pytest.approx(0.04)
    assert (signals.positives_left_low, signals.positives_left_high) == (0.0, 0.5)
    assert signals.positives_left_method == "isotonic"
    # Even dry-looking earlier batches do not override a last batch at 5%.
    assert not stopping_signals([0, 0, 1], [20, 20, 20]).suggest_stop


def test_stop_on_the_estimate_needs_its_whole_interval_under_one():
    quiet = [3, 0]
    stop = stopping_signals(quiet, [20, 20], positives_left=_estimate(0.2, 0.0, 0.8), patience=3)
    assert stop.suggest_stop and "under 1 positive" in stop.reason
    wide = stopping_signals(quiet, [20, 20], positives_left=_estimate(0.4, 0.0, 6.0), patience=3)
    assert not wide.suggest_stop and "0 to 6" in wide.reason


def test_old_estimate_arguments_are_ignored_with_a_warning():
    with pytest.warns(DeprecationWarning, match="positives_left"):
        signals = stopping_signals(
            [0, 0], [20, 20], current_scores=np.zeros(10), unlabeled_mask=np.ones(10, bool)
        )
    assert signals.estimated_positives_left is None


def test_a_large_u_is_summed_over_every_kth_rank_within_a_few_percent(monkeypatch):
    import learning.prior as prior

    scores_u, _, bs, bc = _planted(3)
    full = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
    monkeypatch.setattr(prior, "MAX_SUMMED_UNLABELED", 1000)  # every 4th of U's 4,000 ranks
    sampled = positives_left(scores_u, batch_scores=bs, batch_confirmed=bc, random_state=0)
    assert sampled.n_unlabeled == full.n_unlabeled == len(scores_u)
    assert sampled.point == pytest.approx(full.point, rel=0.05)
    assert sampled.low == pytest.approx(full.low, rel=0.1)
    assert sampled.high == pytest.approx(full.high, rel=0.1)
