"""The loop's one parameter object and its composition (learning.loop)."""

import numpy as np
import pytest

from learning import pool
from learning.loop import ActiveLoop, LoopParams, LoopParamsError, NotEnoughPositives


def test_params_describe_every_field_with_help_and_range():
    infos = LoopParams.describe()
    assert [i.name for i in infos] == list(LoopParams.names())
    for info in infos:
        assert info.help and info.label
        assert info.default == getattr(LoopParams(), info.name)
        if info.choices:
            assert info.default in info.choices
        elif info.kind is not bool:
            assert info.minimum <= info.default <= info.maximum, info.name


def test_from_mapping_coerces_and_reports_each_bad_parameter():
    p = LoopParams.from_mapping({"batch_size": "30", "use_embeddings": "off", "n_clusters": 5})
    assert (p.batch_size, p.use_embeddings, p.n_clusters) == (30, "off", 5)
    with pytest.raises(LoopParamsError) as err:
        LoopParams.from_mapping(
            {"batch_size": 0, "spy_fraction": "x", "bogus": 1, "top_score_share": "nan"}
        )
    assert set(err.value.errors) == {"batch_size", "spy_fraction", "bogus", "top_score_share"}
    with pytest.raises(LoopParamsError, match="cannot exceed the batch size"):
        LoopParams.from_mapping({"batch_size": 5, "n_clusters": 10})
    with pytest.raises(LoopParamsError, match="whole number"):
        LoopParams.from_mapping({"batch_size": 2.5})
    assert LoopParams.from_mapping({"pool_size": ""}).pool_size == 0  # blank keeps the default


def _planted(n=2000, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.rand(n) < 0.05
    X = rng.randn(n, 4).astype(np.float32)
    X[y, 0] += 2.5
    seeds = y & (rng.rand(n) < 0.3)
    return X, y, pool.initial_states(seeds)


def test_fit_ranks_planted_positives_and_select_is_a_replayable_batch():
    X, y, states = _planted()
    loop = ActiveLoop(LoopParams(batch_size=40, n_clusters=4, n_estimators=30), n_jobs=1)
    model = loop.fit(X, states)
    scores = model.predict_proba(X)[:, 1]
    unknown = states == pool.U
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[unknown], scores[unknown]) > 0.85
    batch = loop.select(scores, X, states, iteration=1)
    assert len(batch.indices) == 40 and pool.offerable_mask(states)[batch.indices].all()
    assert (batch.cluster == -1).sum() == 20  # top-score half first
    again = loop.select(scores, X, states, iteration=1)
    np.testing.assert_array_equal(batch.indices, again.indices)
    other = loop.select(scores, X, states, iteration=2)
    assert not np.array_equal(batch.indices, other.indices)


def test_fit_refuses_fewer_than_two_positives_with_the_reason():
    X, _, _ = _planted()
    states = pool.initial_states(np.zeros(len(X), bool))
    with pytest.raises(NotEnoughPositives, match="seed positives"):
        ActiveLoop(LoopParams()).fit(X, states)


def test_positives_left_needs_answers_then_brackets_the_planted_truth():
    X, y, states = _planted(n=3000, seed=1)
    loop = ActiveLoop(LoopParams(batch_size=60, n_clusters=4, n_estimators=30), n_jobs=1)
    assert loop.positives_left(X, states, []) is None
    scores = loop.fit(X, states).predict_proba(X)[:, 1]
    batch = loop.select(scores, X, states, iteration=1).indices
    answers = np.where(y[batch], pool.CONFIRMED, pool.NOT_CONFIRMED)
    states = pool.apply_answers(pool.mark_shown(states, batch), batch, answers)
    est = loop.positives_left(X, states, [batch], expert_recall=1.0)
    truth = int(((states == pool.U) & y).sum())
    assert est.low <= truth <= est.high
    assert est.n_answered == len(batch) and est.n_confirmed == int(y[batch].sum())


def test_positives_left_calibrates_on_the_last_answered_batches_only():
    from learning.loop import POSITIVES_LEFT_BATCHES

    X, y, states = _planted(n=3000, seed=3)
    loop = ActiveLoop(LoopParams(batch_size=40, n_clusters=4, n_estimators=30), n_jobs=1)
    batches = []
    for it in range(POSITIVES_LEFT_BATCHES + 1):
        scores = loop.fit(X, states).predict_proba(X)[:, 1]
        batch = loop.select(scores, X, states, iteration=it + 1).indices
        answers = np.where(y[batch], pool.CONFIRMED, pool.NOT_CONFIRMED)
        states = pool.apply_answers(pool.mark_shown(states, batch), batch, answers)
        batches.append(batch)
    never_answered = np.setdiff1d(np.flatnonzero(states == pool.U), np.concatenate(batches))[:5]
    est = loop.positives_left(X, states, [never_answered, *batches], expert_recall=1.0)
    recent = batches[-POSITIVES_LEFT_BATCHES:]
    assert est.n_answered == sum(len(b) for b in recent)
    assert est.n_confirmed == int(sum(y[b].sum() for b in recent))


def test_not_confirmed_answers_train_as_known_negatives_unless_weighted_zero():
    X, y, states = _planted(n=3000, seed=2)
    params = LoopParams(batch_size=60, n_clusters=4, n_estimators=30)
    loop = ActiveLoop(params, n_jobs=1)
    scores = loop.fit(X, states).predict_proba(X)[:, 1]
    batch = loop.select(scores, X, states, iteration=1).indices
    answers = np.where(y[batch], pool.CONFIRMED, pool.NOT_CONFIRMED)
    states = pool.apply_answers(pool.mark_shown(states, batch), batch, answers)
    negative = states == pool.NOT_CONFIRMED
    assert negative.any()

    told = loop.fit(X, states)  # the default: not-confirmed answers are known negatives
    assert params.not_confirmed_weight == 1.0
    assert not told.reliable_negative_mask_[negative].any()
    off = ActiveLoop(
        LoopParams(batch_size=60, n_clusters=4, n_estimators=30, not_confirmed_weight=0.0), n_jobs=1
    ).fit(X, states)
    # Off, they are U again: the spies' threshold can make them reliable negatives or not, and
    # their scores are higher than when they train at 0.
    assert (
        told.predict_proba(X[negative])[:, 1].mean() < off.predict_proba(X[negative])[:, 1].mean()
    )


def test_embeddings_setting_is_auto_by_default_and_reads_old_booleans():
    assert LoopParams().use_embeddings == "auto"
    for given, read in (
        (True, "on"),
        (False, "off"),
        ("yes", "on"),
        ("0", "off"),
        (" Auto ", "auto"),
    ):
        assert LoopParams.from_mapping({"use_embeddings": given}).use_embeddings == read
    with pytest.raises(LoopParamsError, match="expected auto, on or off"):
        LoopParams.from_mapping({"use_embeddings": "maybe"})


def test_own_event_setting_keeps_only_the_encoder_vectors_own_event_columns():
    import pandas as pd

    from learning.features import dataset_from_frame

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "seed_positive": [1, 0, 0]})
    ds = dataset_from_frame("d", frame, {"numeric": ["a"]})
    own = ActiveLoop(LoopParams()).feature_spec(ds, embedding_dim=67, own_event_columns=3)
    assert own.used_embedding_columns == [64, 65, 66]
    assert own.feature_names[-3:] == ["emb_64", "emb_65", "emb_66"]
    every = ActiveLoop(LoopParams(embedding_columns="all"))
    assert every.feature_spec(ds, embedding_dim=67, own_event_columns=3).used_embedding_columns == (
        list(range(67))
    )
    # An embeddings file of unknown make (no count): every column.
    unknown = ActiveLoop(LoopParams()).feature_spec(ds, embedding_dim=8)
    assert unknown.used_embedding_columns == list(range(8))
    with pytest.raises(LoopParamsError, match="embedding_columns"):
        LoopParams.from_mapping({"embedding_columns": "pooled"})


def test_auto_keeps_embeddings_only_where_the_check_finds_they_help():
    from learning.featurespec import FeatureSpec, embedding_indices

    rng = np.random.RandomState(0)
    n = 3000
    y = rng.rand(n) < 0.08
    states = pool.initial_states(y & (rng.rand(n) < 0.4))
    hand = rng.randn(n, 2)
    spec = FeatureSpec(numeric_columns=["a", "b"], categorical_columns={}, embedding_dim=3)
    assert embedding_indices(spec) == [2, 3, 4]
    loop = ActiveLoop(LoopParams(), n_jobs=1)
    assert loop.wants_embeddings(has_events=True) and not loop.wants_embeddings(has_events=False)
    informative = rng.randn(n, 3)
    informative[y, 0] += 3.0
    X = np.hstack([hand, informative]).astype(np.float32)
    assert loop.check_embeddings(X, states, spec).use
    noise = np.hstack([hand, rng.randn(n, 3)]).astype(np.float32)
    check = loop.check_embeddings(noise, states, spec)
    assert not check.use
    kept, X2 = loop.without_embeddings(spec, noise)
    assert kept.embedding_dim == 0 and X2.shape == (n, 2) and kept.feature_names == ["a", "b"]
    np.testing.assert_array_equal(X2, noise[:, :2])
    # on and off never run the check
    for setting in ("on", "off"):
        assert (
            ActiveLoop(LoopParams(use_embeddings=setting)).check_embeddings(X, states, spec) is None
        )
    assert not ActiveLoop(LoopParams(use_embeddings="off")).wants_embeddings(has_events=True)


def test_bags_parameter_is_automatic_by_default_and_reaches_the_learner():
    assert LoopParams().two_step().n_bags == "auto"
    assert LoopParams(n_bags=3).two_step().n_bags == 3
    with pytest.raises(LoopParamsError, match="n_bags"):
        LoopParams.from_mapping({"n_bags": "21"})
