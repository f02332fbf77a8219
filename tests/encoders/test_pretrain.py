import numpy as np
import torch

from encoders import checkpoint
from encoders.api import build_model
from encoders.batches import case_windows, make_batch
from encoders.featurize import Featurizer
from encoders.pretrain import PretrainConfig, pretrain, sample_pairs
from tests.encoders.conftest import SCHEMA
from tests.encoders.test_model import SMALL


def small_setup(events, seed=0):
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    torch.manual_seed(seed)
    return featurizer, seqs, build_model(featurizer, **SMALL)


def test_pairs_are_consecutive_halves_of_one_entity(events):
    _, seqs, _ = small_setup(events)
    first, second = sample_pairs(seqs, 16, 48, np.random.default_rng(0))
    ent_of_row = np.repeat(np.arange(len(seqs.entity_ids)), seqs.lengths)
    for a, b in zip(first, second, strict=True):
        a, b = a[a >= 0], b[b >= 0]
        assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) <= 48
        assert b[0] == a[-1] + 1 and (np.diff(np.concatenate([a, b])) == 1).all()
        assert len(set(ent_of_row[np.concatenate([a, b])])) == 1


def test_short_pretraining_lowers_both_losses(events):
    _, seqs, model = small_setup(events)
    config = PretrainConfig(
        seq_len=48, batch_size=16, lr=3e-3, max_steps=30, minutes=5, eval_size=64, log_every=5
    )
    calls = []
    history = pretrain(model, seqs, config, progress=lambda d, t, i: calls.append((d, t)))
    before, after = history["eval_initial"], history["eval_final"]
    assert after["mem"] < 0.9 * before["mem"]
    assert after["qt"] < 0.9 * before["qt"]
    assert history["steps"] == 30 and history["stop_reason"] == "max_steps"
    assert calls[-1] == (30, 30) and len(history["mem"]) == len(history["qt"]) > 5


def test_time_budget_stops_training(events):
    _, seqs, model = small_setup(events)
    config = PretrainConfig(seq_len=32, batch_size=8, minutes=0.02, min_steps=10**6)
    history = pretrain(model, seqs, config)
    assert history["stop_reason"] == "time_budget" and history["train_s"] < 10


def test_checkpoint_round_trip_is_weights_only_safe(events, tmp_path):
    featurizer, seqs, model = small_setup(events)
    model.eval()
    path = checkpoint.save(tmp_path / "enc.pt", model, featurizer, {"steps": 3})
    raw = torch.load(path, weights_only=True)  # plain types only
    assert set(raw) == {"config", "featurizer", "state_dict", "history"}
    loaded, loaded_featurizer = checkpoint.load(path)
    index = case_windows(seqs, np.array([seqs.offsets[2] - 1, seqs.offsets[5] - 1, -1]), 64)
    batch = make_batch(seqs.features, index)
    with torch.no_grad():
        a, _ = model(batch)
        b, _ = loaded(batch)
    assert torch.equal(a, b)
    assert loaded_featurizer.state_dict() == featurizer.state_dict()
    assert loaded.config == model.config


def test_budget_is_sized_to_the_data(events):
    _, seqs, model = small_setup(events)
    config = PretrainConfig(seq_len=32, batch_size=8, epochs=0.5, min_steps=5, minutes=5)
    expected = config.data_steps(len(seqs.features))
    assert expected == max(5, -(-len(seqs.features) // (2 * 8 * 32)))
    assert config.data_steps(10 * len(seqs.features)) > 9 * expected  # grows with the events
    history = pretrain(model, seqs, config)
    assert history["stop_reason"] == "data_budget" and history["steps"] == expected
    assert history["n_events"] == len(seqs.features) and history["data_steps"] == expected


def test_training_stops_when_the_heldout_loss_levels_off(events):
    _, seqs, model = small_setup(events)
    # a learning rate of zero: the held-out loss cannot improve, so patience ends the run
    config = PretrainConfig(
        seq_len=32, batch_size=8, lr=0.0, epochs=None, min_steps=10, patience=20, eval_every=5
    )
    history = pretrain(model, seqs, config)
    assert history["stop_reason"] == "converged" and history["steps"] == 20
    assert [h["step"] for h in history["heldout"]][:3] == [0, 5, 10]
    assert {"mem", "qt", "next", "total"} <= set(history["heldout"][-1])
