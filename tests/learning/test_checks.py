import re

import numpy as np
import pytest

from learning.checks import (
    MAX_SHARE,
    check_count,
    check_look,
    check_positions,
    choose_checks,
    wilson_interval,
)
from learning.sampling import select_batch


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # Reference values of the Wilson score interval at z = 1.96.
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (81, 263, 0.2553, 0.3662),
        (1, 1, 0.2065, 1.0),
    ],
)
def test_wilson_interval_matches_reference_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=5e-4) and hi == pytest.approx(high, abs=5e-4)
    assert 0.0 <= lo <= successes / n <= hi <= 1.0


def test_wilson_interval_narrows_with_n_and_refuses_nonsense():
    assert wilson_interval(0, 0) is None
    widths = [np.subtract(*wilson_interval(8 * k, 10 * k)[::-1]) for k in (1, 10, 100)]
    assert widths[0] > widths[1] > widths[2] > 0
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_check_count_rounds_and_bounds_the_share():
    assert check_count(0.0, 100) == 0
    assert check_count(0.1, 20) == 2
    assert check_count(0.05, 30) == 2  # round(1.5) -> 2 (round half to even)
    assert check_count(MAX_SHARE, 100) == 20
    with pytest.raises(ValueError, match="between 0 and 0.2"):
        check_count(0.3, 100)


def test_choose_checks_prefers_the_least_checked_and_is_seeded():
    candidates = np.arange(100, 110)
    times = np.array([2, 0, 1, 0, 0, 3, 1, 0, 2, 1])
    chosen = choose_checks(candidates, times, 3, random_state=7)
    assert set(chosen) <= {101, 103, 104, 107}
    assert len(set(chosen)) == 3
    np.testing.assert_array_equal(chosen, choose_checks(candidates, times, 3, random_state=7))
    # Once the never-checked run out, the once-checked come next.
    chosen = choose_checks(candidates, times, 6, random_state=1)
    assert {101, 103, 104, 107} <= set(chosen) and set(chosen) - {101, 103, 104, 107} <= {
        102,
        106,
        109,
    }
    assert len(choose_checks(candidates, times, 50, random_state=0)) == 10
    # Random within a level: different seeds pick different never-checked ones.
    picks = {tuple(sorted(choose_checks(candidates, times, 2, random_state=s))) for s in range(20)}
    assert len(picks) > 1


def test_check_positions_spread_over_the_whole_batch():
    seen = set()
    for seed in range(200):
        pos = check_positions(20, 2, random_state=seed)
        assert len(pos) == 2 and len(set(pos)) == 2 and list(pos) == sorted(pos)
        assert 0 <= pos.min() and pos.max() < 22
        seen.update(pos.tolist())
    assert seen == set(range(22))  # first and last places included


UNCERTAIN = re.compile(
    r"^uncertain \d\.\d\d: score [\d.e+-]+, (above|below|at) the selection threshold "
    r"[\d.e+-]+ \(the top-1% score\); cluster \d+ of \d+, \d+(st|nd|rd|th) of its [\d,]+ "
    r"candidates$"
)


def test_check_look_writes_what_a_regular_case_shows():
    rng = np.random.RandomState(0)
    X = rng.randn(2000, 3)
    scores = rng.beta(1, 30, 2000)
    sel = select_batch(scores, X, 20, n_clusters=4, top_fraction=0.01, random_state=0)
    assert all(UNCERTAIN.match(r) for r in sel.reason)
    look = check_look(sel, scores[sel.indices], np.array([0.97, 0.02]), random_state=3)
    assert all(UNCERTAIN.match(r) for r in look.reason), look.reason
    assert set(look.cluster) <= set(sel.cluster)
    # Each check is the next of the cluster it joins; its uncertainty is its own score's.
    for c, rank in zip(look.cluster, look.rank_in_cluster, strict=True):
        assert rank >= (sel.cluster == c).sum()
    assert look.uncertainty[0] < look.uncertainty[1]
    assert "score 0.9700, above" in look.reason[0]


TOP = re.compile(
    r"^top score [\d.e+-]+: the \d+(st|nd|rd|th) highest of the [\d,]+ cases not shown yet "
    r"\(chosen by score, not clustered\)$"
)


def test_check_look_in_a_top_score_batch_ranks_the_checks_among_its_cases():
    rng = np.random.RandomState(1)
    X = rng.randn(500, 2)
    scores = rng.uniform(0, 0.9, 500)
    sel = select_batch(scores, X, 10, top_score_share=1.0, random_state=0)
    look = check_look(sel, scores[sel.indices], np.array([0.95]), random_state=0)
    assert look.cluster.tolist() == [-1] and look.rank_in_cluster.tolist() == [0]
    assert look.reason[0].startswith("top score 0.9500: the 1st highest of the 501 ")
    # The regular cases move one rank down: no two cases of the batch share a rank.
    assert look.regular_rank_in_cluster.tolist() == list(range(1, 11))
    assert all(TOP.match(r) for r in look.regular_reason + look.reason)
    assert "the 2nd highest of the 501 cases" in look.regular_reason[0]


def test_check_look_in_a_mixed_batch_follows_the_checks_score():
    rng = np.random.RandomState(2)
    X = rng.randn(3000, 3)
    scores = rng.beta(1, 40, 3000)
    sel = select_batch(scores, X, 20, n_clusters=3, top_score_share=0.5, random_state=0)
    regular = scores[sel.indices]
    lowest_top = regular[sel.cluster == -1].min()
    look = check_look(sel, regular, np.array([0.99, lowest_top / 2]), random_state=0)
    # A high score joins the top-score part, a low one a cluster of the uncertain part.
    assert look.cluster[0] == -1 and TOP.match(look.reason[0])
    assert look.cluster[1] >= 0 and UNCERTAIN.match(look.reason[1])
    top_ranks = [*look.regular_rank_in_cluster[sel.cluster == -1], look.rank_in_cluster[0]]
    assert sorted(top_ranks) == list(range(11)) and look.rank_in_cluster[0] == 0
    # The uncertain part's ranks and reasons are as the selection wrote them.
    part = sel.cluster >= 0
    np.testing.assert_array_equal(look.regular_rank_in_cluster[part], sel.rank_in_cluster[part])
    assert [r for r, p in zip(look.regular_reason, part, strict=True) if p] == [
        r for r, p in zip(sel.reason, part, strict=True) if p
    ]
