import numpy as np
import pandas as pd
import pytest
import torch

from encoders import checkpoint
from encoders.api import (
    embed_dataset,
    embedding_map_png,
    embeddings_for_dataset,
    pretrain_for_dataset,
    read_case_keys,
    read_events,
)
from encoders.embed import embed_cases, embed_cases_windowed
from encoders.featurize import _ts_ns, case_positions
from encoders.pretrain import PretrainConfig
from tests.conftest import shared_dataset
from tests.encoders.conftest import write_dataset
from tests.encoders.test_model import SMALL

TINY_PRETRAIN = PretrainConfig(seq_len=32, batch_size=8, max_steps=3, eval_size=16)


@pytest.fixture
def trained(dataset, tmp_path):
    path = pretrain_for_dataset(
        dataset,
        tmp_path / "enc.pt",
        model_overrides=SMALL,
        pretrain_config=TINY_PRETRAIN,
    )
    return path


def test_fast_path_equals_each_case_encoded_alone(dataset, trained):
    model, featurizer = checkpoint.load(trained)
    seqs = featurizer.sequences(read_events(dataset))
    cases = read_case_keys(dataset)
    ent, pos, gap = case_positions(seqs, cases["entity_id"].to_numpy(), _ts_ns(cases["ts"]))
    assert (pos >= 0).sum() > 200 and pos[-1] == -1 and pos[-2] == -1  # unknown and too early
    reference = embed_cases_windowed(model, seqs, pos, gap)
    fast = np.zeros_like(reference)
    # tiny segments force the long-history path (overlapping segments) too
    embed_cases(
        model, seqs, ent, pos, gap, fast, chunk_events=500, batch_tokens=300, segment_len=60
    )
    np.testing.assert_allclose(fast, reference, atol=2e-5)
    assert np.abs(reference).sum(1).min() > 0


def test_embed_dataset_rows_follow_cases_and_ignore_the_future(dataset, trained, events, tmp_path):
    emb = embed_dataset(trained, dataset, tmp_path / "emb.npy")
    config = checkpoint.load(trained)[0].config
    width = config.embedding_dim
    # pooled vector + the own event's surprise per field + its z-score per numeric field
    assert config.num_regression and config.n_numeric == 1
    assert width == SMALL["out_dim"] + 3 + 1
    assert emb.shape == (302, width) and emb.dtype == np.float32
    assert isinstance(emb, np.memmap)
    # rewrite every event after each case's ts: the case's vector must not move
    cases = pd.read_parquet(dataset / "cases.parquet")
    cut = cases.iloc[7]
    future = (events["entity_id"] == cut["entity_id"]) & (events["ts"] > cut["ts"])
    assert future.sum() >= 1
    changed = events.copy()
    changed.loc[future, "amount"] *= 100
    changed.loc[future, "terminal_id"] = "t999"
    extra = changed[future].head(1).assign(ts=cut["ts"] + pd.Timedelta(1, "ns"))  # just after
    changed = pd.concat([changed, extra], ignore_index=True)
    other = write_dataset(tmp_path / "future", changed)
    cases.to_parquet(other / "cases.parquet")  # the very same cases
    emb2 = embed_dataset(trained, other, tmp_path / "emb2.npy")
    np.testing.assert_allclose(emb2[7], emb[7], atol=1e-6)
    # the case's own event (at its ts) is part of its vector: changing it moves the vector
    own = (events["entity_id"] == cut["entity_id"]) & (events["ts"] == cut["ts"])
    assert own.sum() == 1
    mine = events.copy()
    mine.loc[own, "amount"] *= 100
    third = write_dataset(tmp_path / "own", mine)
    cases.to_parquet(third / "cases.parquet")
    emb3 = embed_dataset(trained, third, tmp_path / "emb3.npy")
    assert np.abs(emb3[7] - emb[7]).max() > 1e-4
    # while a case later than the change does move
    later = np.flatnonzero(
        (cases["entity_id"] == cut["entity_id"]).to_numpy() & (cases["ts"] > cut["ts"]).to_numpy()
    )
    if len(later):
        assert np.abs(emb2[later] - emb[later]).max() > 1e-4


def test_embedding_resumes_after_interruption(dataset, trained, tmp_path):
    full = np.array(embed_dataset(trained, dataset, tmp_path / "full.npy"))
    calls = []

    def stop_early(done, total, info):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    import encoders.api as api

    api.EMBED_CHUNK_EVENTS, saved = 400, api.EMBED_CHUNK_EVENTS
    try:
        with pytest.raises(KeyboardInterrupt):
            embed_dataset(trained, dataset, tmp_path / "part.npy", progress=stop_early)
        resumed_progress = []
        part = embed_dataset(
            trained,
            dataset,
            tmp_path / "part.npy",
            progress=lambda d, t, i: resumed_progress.append(d),
        )
    finally:
        api.EMBED_CHUNK_EVENTS = saved
    np.testing.assert_array_equal(np.asarray(part), full)
    assert resumed_progress[0] > 0  # started past the chunks already written


def test_embeddings_for_dataset_caches(dataset, tmp_path, monkeypatch):
    import encoders.api as api

    def small_pretrain(data_dir, out_path, *, minutes=5.0, progress=None, seed=0):
        return pretrain_for_dataset(
            data_dir, out_path, model_overrides=SMALL, pretrain_config=TINY_PRETRAIN
        )

    # the real pretraining takes minutes; the same function with a tiny budget keeps this fast
    monkeypatch.setattr(api, "pretrain_for_dataset", small_pretrain)
    first = embeddings_for_dataset(dataset, cache_dir=tmp_path / "cache")
    ckpts = list((tmp_path / "cache").glob("encoder-*.pt"))
    stamp = ckpts[0].stat().st_mtime_ns
    second = embeddings_for_dataset(dataset, cache_dir=tmp_path / "cache")
    assert len(ckpts) == 1 and ckpts[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_pretrain_is_deterministic(dataset, tmp_path):
    paths = [
        pretrain_for_dataset(
            dataset, tmp_path / f"e{i}.pt", model_overrides=SMALL, pretrain_config=TINY_PRETRAIN
        )
        for i in range(2)
    ]
    a, b = (checkpoint.load_raw(p)["state_dict"] for p in paths)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_embedding_map_png(tmp_path):
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(4, 1, (50, 8))]).astype(np.float32)
    colors = np.array([0] * 150 + [1] * 50)
    path = embedding_map_png(
        emb, tmp_path / "map.png", colors=colors, labels=["unlabeled", "seed"], sample=120
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_real_data_sequences_end_at_the_case():
    data = shared_dataset("fraud_handbook")
    import pyarrow.parquet as pq

    from encoders.featurize import Featurizer

    events = pq.ParquetFile(data / "events.parquet").read_row_group(0).to_pandas().head(50_000)
    featurizer = Featurizer().fit(
        events, {"events": {"numeric": ["amount"], "categorical": ["terminal_id"]}}
    )
    assert featurizer.categorical[0]["kind"] == "hash"  # thousands of terminals
    seqs = featurizer.sequences(events)
    # in fraud_handbook every case is also an event: its sequence ends at its own event ...
    entity, ts = events["entity_id"].to_numpy(), _ts_ns(events["ts"])
    _, pos, gap = case_positions(seqs, entity, ts)
    assert (pos >= 0).all() and (seqs.ts[pos] == ts).all() and (gap == 0).all()
    # ... and without it, just before: exactly each customer's first transaction has none
    _, pos, _ = case_positions(seqs, entity, ts, own_event=False)
    has = pos >= 0
    assert (seqs.ts[pos[has]] < ts[has]).all()
    assert (~has).sum() == len(seqs.entity_ids)


def test_processes_sharing_one_job_write_what_one_process_writes(dataset, trained, tmp_path):
    """Two handles on one memmap, each embedding the units the other did not claim, give the
    single-process result; running a unit again changes nothing."""
    from encoders.api import ChunkedEmbedding

    full = np.array(embed_dataset(trained, dataset, tmp_path / "full.npy"))
    out = tmp_path / "shared.npy"
    first = ChunkedEmbedding(trained, dataset, out, chunk_events=300)
    second = ChunkedEmbedding(trained, dataset, out, chunk_events=300)
    assert len(first.keys) > 3
    assert first.prepare() is False
    claimed: set[str] = set()

    def every_other(key: str) -> bool:  # the first handle takes every other unit
        if key in claimed or first.keys.index(key) % 2:
            return False
        claimed.add(key)
        return True

    mine = first.run(claim=every_other)
    assert not first.is_complete() and mine == sorted(claimed, key=first.keys.index)
    theirs = second.run(claim=lambda key: key not in claimed)
    assert set(mine) | set(theirs) == set(first.keys) and not set(mine) & set(theirs)
    assert first.is_complete() and second.is_complete()
    np.testing.assert_array_equal(np.asarray(first.result()), full)
    # A unit redelivered after it finished is skipped; one forced to run again rewrites the same.
    assert second.run() == []
    second.progress_path.unlink()
    again = second.run(claim=lambda key: key == "chunk1")
    assert again == ["chunk1"]
    np.testing.assert_array_equal(np.asarray(second.result()), full)
