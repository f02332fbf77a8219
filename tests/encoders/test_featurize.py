import numpy as np
import pandas as pd

from encoders.featurize import OOV, PAD, Featurizer, _ts_ns, case_positions, with_case_events
from tests.encoders.conftest import SCHEMA


def test_vocabulary_oov_and_hashing(events):
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    kinds = {f["name"]: f["kind"] for f in featurizer.categorical}
    assert kinds == {"terminal_id": "hash", "channel": "vocab"}  # 60 terminals > 20
    unseen = events.head(3).copy()
    unseen["channel"] = ["never-seen", None, "web"]
    feats = featurizer.transform(unseen)
    channel = feats.cat[:, 1]
    assert channel[0] == OOV and channel[1] == PAD and channel[2] >= 2
    terminal = feats.cat[:, 0]
    assert ((terminal >= 1) & (terminal <= 64)).all()
    # the hash is stable: the same value always lands in the same bucket
    again = featurizer.transform(unseen)
    assert (again.cat == feats.cat).all()


def test_numeric_buckets_follow_order_and_missing_is_zero(events):
    featurizer = Featurizer(num_buckets=8).fit(events, SCHEMA)
    frame = events.head(4).copy()
    frame["amount"] = [1.0, 50.0, 5000.0, np.nan]
    feats = featurizer.transform(frame)
    buckets = feats.num_bucket[:, 0]
    assert buckets[0] < buckets[1] < buckets[2] and buckets[3] == 0
    assert feats.num[3, 0] == 0.0 and feats.num[0, 0] < feats.num[2, 0]


def test_text_ngrams_hash_to_ids(events):
    featurizer = Featurizer(text_buckets=128, max_ngrams=8).fit(events, SCHEMA)
    frame = events.head(2).copy()
    frame["memo"] = ["abc", None]
    feats = featurizer.transform(frame)
    assert feats.text.shape == (2, 1, 8)
    assert (feats.text[0, 0] > 0).sum() == 3  # ^ab, abc, bc$
    assert (feats.text[1] == 0).all()


def test_sequences_sorted_with_gaps(events):
    featurizer = Featurizer().fit(events, SCHEMA)
    shuffled = events.sample(frac=1.0, random_state=3)
    seqs = featurizer.sequences(shuffled)
    for e in range(len(seqs.entity_ids)):
        lo, hi = seqs.offsets[e], seqs.offsets[e + 1]
        assert (np.diff(seqs.ts[lo:hi]) >= 0).all()
        assert seqs.features.time_num[lo, 1] == 1.0  # first event flag
        assert (seqs.features.time_num[lo + 1 : hi, 1] == 0).all()
    assert (
        shuffled["entity_id"].to_numpy()[seqs.order] == np.repeat(seqs.entity_ids, seqs.lengths)
    ).all()


def test_case_positions_take_events_strictly_before(events):
    featurizer = Featurizer().fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    entity = events["entity_id"].to_numpy()[:50]
    ts = _ts_ns(events["ts"])[:50]
    entity_index, position, gap = case_positions(seqs, entity, ts, own_event=False)
    for k in range(50):
        lo, hi = seqs.offsets[entity_index[k]], seqs.offsets[entity_index[k] + 1]
        before = np.flatnonzero(seqs.ts[lo:hi] < ts[k])
        expected = lo + before[-1] if len(before) else -1
        assert position[k] == expected
    # the case's own event (same ts) is never part of its sequence
    assert (seqs.ts[position[position >= 0]] < ts[position >= 0]).all()
    unknown = case_positions(seqs, np.array(["nobody"]), np.array([ts[0]]))
    assert unknown[0][0] == -1 and unknown[1][0] == -1 and unknown[2][0] == 0
    no_ts = case_positions(seqs, np.array(["c0"]), None)
    e0 = list(seqs.entity_ids).index("c0")
    assert no_ts[1][0] == seqs.offsets[e0 + 1] - 1


def test_case_positions_end_at_the_case_own_event(events):
    featurizer = Featurizer().fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    entity = events["entity_id"].to_numpy()[:50]
    ts = _ts_ns(events["ts"])[:50]
    entity_index, position, gap = case_positions(seqs, entity, ts)
    for k in range(50):
        lo, hi = seqs.offsets[entity_index[k]], seqs.offsets[entity_index[k] + 1]
        upto = np.flatnonzero(seqs.ts[lo:hi] <= ts[k])
        assert position[k] == lo + upto[-1]
    assert (seqs.ts[position] == ts).all() and (gap == 0).all()
    # between two events: the last one before, with its gap
    mid = ts[:1] + 1_000_000_000
    _, pos, gap = case_positions(seqs, entity[:1], mid)
    assert seqs.ts[pos[0]] <= mid[0] and gap[0] > 0


def test_with_case_events_adds_only_missing_own_events(events):
    first = events.groupby("entity_id").head(1)
    cases = pd.DataFrame(
        {
            "entity_id": [first["entity_id"].iloc[0], "c1", "newbie"],
            "ts": [first["ts"].iloc[0], pd.Timestamp("2030-01-01"), pd.Timestamp("2021-03-02")],
            "amount": [1.0, 7.5, 3.0],
            "segment": ["a", "b", "c"],  # not an event field: not copied
        }
    )
    out = with_case_events(events, cases)
    assert len(out) == len(events) + 2  # the first case's event already exists
    added = out.iloc[len(events) :]
    assert set(added["entity_id"]) == {"c1", "newbie"} and "segment" not in out.columns
    assert added["amount"].tolist() == [7.5, 3.0] and added["terminal_id"].isna().all()
    assert with_case_events(events, cases.drop(columns=["ts"])) is events
    # the added events become the cases' last positions
    featurizer = Featurizer().fit(out, SCHEMA)
    seqs = featurizer.sequences(out)
    _, pos, gap = case_positions(seqs, cases["entity_id"].to_numpy(), _ts_ns(cases["ts"]))
    assert (seqs.ts[pos] == _ts_ns(cases["ts"])).all() and (gap == 0).all()


def test_state_round_trip(events):
    featurizer = Featurizer(max_vocab=20).fit(events, SCHEMA)
    clone = Featurizer.from_state(featurizer.state_dict())
    a, b = featurizer.transform(events), clone.transform(events)
    for name in vars(a):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_schema_can_be_inferred():
    frame = pd.DataFrame(
        {
            "entity_id": ["a", "a"],
            "ts": pd.to_datetime(["2020-01-01", "2020-01-02"]),
            "x": [1.0, 2.0],
            "kind": ["p", "q"],
        }
    )
    featurizer = Featurizer().fit(frame, None)
    assert [f["name"] for f in featurizer.numeric] == ["x"]
    assert [f["name"] for f in featurizer.categorical] == ["kind"]
