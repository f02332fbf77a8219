import numpy as np
import pytest

from learning import pool


def test_pool_rules():
    states = pool.initial_states(np.array([1, 0, 0, 0, 0, 0], bool))
    assert list(states) == ["P", "U", "U", "U", "U", "U"]
    states = pool.mark_shown(states, [1, 2, 3])
    assert not pool.offerable_mask(states)[[1, 2, 3]].any()
    states = pool.apply_answers(states, [1, 2, 3], ["confirmed", "not_confirmed", "skipped"])
    s, w = pool.training_targets(states, confirmed_weight=5.0)
    # Confirmed -> P with the up-sampling weight; not confirmed and skipped train as U.
    assert list(s) == [1, 1, 0, 0, 0, 0]
    assert list(w) == [1.0, 5.0, 1.0, 1.0, 1.0, 1.0]
    offer = pool.offerable_mask(states)
    # Not confirmed is never offered again; skipped may be; P and confirmed are not.
    assert list(offer) == [False, False, False, True, True, True]
    assert list(pool.positive_mask(states)) == [True, True, False, False, False, False]


def test_answers_are_final_and_validated():
    states = pool.initial_states(np.zeros(4, bool))
    states = pool.apply_answers(states, [0, 1], [pool.CONFIRMED, pool.NOT_CONFIRMED])
    with pytest.raises(ValueError):
        pool.apply_answers(states, [0], [pool.SKIPPED])
    with pytest.raises(ValueError):
        pool.apply_answers(states, [1], [pool.CONFIRMED])
    with pytest.raises(ValueError):
        pool.apply_answers(states, [2], ["clean"])
    with pytest.raises(ValueError):
        pool.apply_answers(states, [2, 2], [pool.SKIPPED, pool.SKIPPED])
    with pytest.raises(ValueError):
        pool.mark_shown(states, [1])
    # The input is never modified.
    before = states.copy()
    pool.apply_answers(states, [2], [pool.SKIPPED])
    np.testing.assert_array_equal(states, before)
