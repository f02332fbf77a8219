import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from encoders.api import build_model
from encoders.batches import case_windows, make_batch
from encoders.featurize import Featurizer
from encoders.model import AutoRiskConfig, SlidingWindowAttention, gated_conv_parameter_counts
from tests.conftest import REPO_ROOT
from tests.encoders.conftest import SCHEMA

SMALL = dict(d_model=32, n_heads=4, window=8, pool_window=16, max_len=64, out_dim=16)


@pytest.fixture
def setup(events):
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    torch.manual_seed(0)
    return build_model(featurizer, **SMALL).eval(), seqs


def entity_index(seqs, e, length):
    lo = seqs.offsets[e]
    return np.arange(lo, lo + length)


def test_output_shapes_and_padding_mask(setup):
    model, seqs = setup
    index = np.full((3, 40), -1)
    index[0, :30] = entity_index(seqs, 0, 30)
    index[1, :12] = entity_index(seqs, 1, 12)
    batch = make_batch(seqs.features, index)
    assert batch["mask"].sum(1).tolist() == [30, 12, 0]
    with torch.no_grad():
        out, loss = model(batch)
        h = model.hidden(batch)
    assert out.shape == (3, 16) and loss is None and h.shape == (3, 40, 32)
    # more right padding changes nothing
    wider = np.full((3, 64), -1)
    wider[:, :40] = index
    with torch.no_grad():
        out_wide, _ = model(make_batch(seqs.features, wider))
    torch.testing.assert_close(out, out_wide, rtol=0, atol=1e-5)
    # the empty sequence gets the model's "no history" vector
    with torch.no_grad():
        empty = model.pool(torch.zeros(1, 64), torch.zeros(1), torch.ones(1, dtype=torch.bool))
    torch.testing.assert_close(out[2:], empty)


def test_each_position_looks_left_only_within_receptive_field(setup):
    model, seqs = setup
    rf = model.config.receptive_field
    n = 60
    index = entity_index(seqs, 1, n)[None, :]
    batch = make_batch(seqs.features, index)
    changed = {k: v.clone() for k, v in batch.items()}
    t = 45
    changed["num"][0, t] += 3.0  # change event t only
    changed["cat"][0, t] = 1
    with torch.no_grad():
        h, h2 = model.hidden(batch)[0], model.hidden(changed)[0]
    diff = (h - h2).abs().amax(-1)
    assert diff[:t].max() == 0  # nothing before t sees it
    assert diff[t] > 0 and diff[min(n - 1, t + 5)] > 0
    # and event t can only reach positions within the receptive field
    index = entity_index(seqs, 1, 100)[None, :]
    batch = make_batch(seqs.features, index)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["num"][0, 2] += 3.0
    with torch.no_grad():
        diff = (model.hidden(batch)[0] - model.hidden(changed)[0]).abs().amax(-1)
    # beyond the receptive field nothing changes at all
    assert diff[2 + rf :].max() == 0 and diff[2 : 2 + rf // 2].min() > 0


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while running ``fn`` (activation memory)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_attention_memory_grows_linearly_with_length():
    torch.manual_seed(0)
    local = SlidingWindowAttention(32, 4, window=16)
    full = nn.MultiheadAttention(32, 4, batch_first=True)

    def local_mem(n):
        return saved_bytes(lambda: local(torch.randn(1, n, 32)).sum())

    def full_mem(n):
        x = torch.randn(1, n, 32)
        return saved_bytes(lambda: full(x, x, x, need_weights=True)[0].sum())

    ratio_local = local_mem(2048) / local_mem(512)
    ratio_full = full_mem(2048) / full_mem(512)
    assert 3.5 < ratio_local < 4.5  # 4x the length -> 4x the memory
    assert ratio_full > 10  # the quadratic baseline would fail the same check


def test_same_input_same_embedding(setup, events):
    model, seqs = setup
    index = case_windows(seqs, np.array([seqs.offsets[1] - 1, seqs.offsets[3] - 1]), 64)
    batch = make_batch(seqs.features, index)
    with torch.no_grad():
        a, _ = model(batch)
        b, _ = model(batch)
    assert torch.equal(a, b)
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    torch.manual_seed(0)
    twin = build_model(featurizer, **SMALL).eval()
    with torch.no_grad():
        c, _ = twin(batch)
    assert torch.equal(a, c)


def test_config_rejects_pool_longer_than_window():
    with pytest.raises(AssertionError):
        AutoRiskConfig(max_len=64, pool_window=64).validate()


def test_separable_conv_parameter_counts():
    counts = gated_conv_parameter_counts(256, 5)
    assert counts["plain_conv"] == 256 * 256 * 5 + 256
    # depthwise-separable: about 80% fewer than the plain conv (the seed's 320k -> 60k)
    assert 0.78 < 1 - counts["depthwise_separable_conv"] / counts["plain_conv"] < 0.82
    assert 0.78 < 1 - counts["gated_depthwise_separable_conv"] / counts["gated_plain_conv"] < 0.82


def test_encoders_import_no_django():
    # a fresh interpreter: pytest-django has already imported django in this one
    code = "import sys, encoders.api, encoders.bench.quality; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_attention_in_inference_chunks_matches_one_call():
    torch.manual_seed(0)
    attention = SlidingWindowAttention(32, 4, window=8).eval()
    x = torch.randn(2, 8 * (SlidingWindowAttention.INFERENCE_BLOCKS * 2 + 3) - 5, 32)
    with torch.no_grad():
        chunked = attention(x)  # more blocks than INFERENCE_BLOCKS: computed in chunks
    whole = attention(x).detach()  # autograd on: one call over every block
    assert torch.allclose(chunked, whole, atol=1e-6)


def test_next_event_surprise_looks_only_at_earlier_events(setup):
    model, seqs = setup
    n = 30
    index = entity_index(seqs, 1, n)[None, :]
    batch = make_batch(seqs.features, index)
    k = 20
    changed = {key: value.clone() for key, value in batch.items()}
    changed["cat"][0, k] = (changed["cat"][0, k] % 5) + 1  # another terminal / channel at k
    changed["num_bucket"][0, k] = 1
    with torch.no_grad():
        a = model.next_event_nll(model.hidden(batch), batch)
        b = model.next_event_nll(model.hidden(changed), changed)
    assert a.shape == (1, n, model.config.n_fields) and (a >= 0).all()
    torch.testing.assert_close(a[:, :k], b[:, :k], rtol=0, atol=1e-6)  # earlier: unchanged
    assert (a[0, k] - b[0, k]).abs().max() > 1e-4  # the changed event's own surprise moves
    # a case's vector: pooled output, then its own event's surprise (zero when read before it)
    with torch.no_grad():
        own = model.case_vectors(batch, case_gap=torch.zeros(1))
        before = model.case_vectors(batch, case_gap=torch.ones(1))
    cfg = model.config
    assert own.shape == (1, cfg.embedding_dim) and cfg.embedding_dim == cfg.out_dim + 3 + 1
    torch.testing.assert_close(own[0, cfg.out_dim : cfg.out_dim + cfg.n_fields], a[0, -1])
    assert (before[0, cfg.out_dim :] == 0).all()


def test_own_event_pit_places_the_value_in_the_predicted_distribution(events):
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    torch.manual_seed(0)
    model = build_model(featurizer, pit=True, num_regression=False, **SMALL).eval()
    assert model.config.embedding_dim == SMALL["out_dim"] + 3 + 1  # + a PIT per numeric field
    index = entity_index(seqs, 1, 30)[None, :]
    batch = make_batch(seqs.features, index)
    cfg = model.config
    last = (torch.tensor([0]), torch.tensor([29]))
    pits = []
    for bucket in (1, cfg.num_buckets):  # the lowest and the highest amount bucket
        changed = {key: value.clone() for key, value in batch.items()}
        changed["num_bucket"][0, 29, 0] = bucket
        with torch.no_grad():
            cols = model.next_event_surprise(model.hidden(changed), changed, last)
        assert cols.shape == (1, cfg.n_surprise) == (1, cfg.n_fields + cfg.n_numeric)
        pits.append(float(cols[0, -1]))
    # The lowest bucket sits under almost everything predicted, the highest above it.
    assert -0.5 <= pits[0] < 0 < pits[1] <= 0.5
    missing = {key: value.clone() for key, value in batch.items()}
    missing["num_bucket"][0, 29, 0] = 0
    with torch.no_grad():
        cols = model.next_event_surprise(model.hidden(missing), missing, last)
    assert float(cols[0, -1]) == 0.0  # a missing value: no PIT


def test_own_value_z_score_under_the_gaussian_next_value_head(events):
    featurizer = Featurizer(max_vocab=20, hash_buckets=64).fit(events, SCHEMA)
    seqs = featurizer.sequences(events)
    torch.manual_seed(0)
    model = build_model(featurizer, **SMALL).eval()  # the head is on by default
    cfg = model.config
    assert cfg.n_surprise == cfg.n_fields + cfg.n_numeric and not cfg.pit
    batch = make_batch(seqs.features, entity_index(seqs, 1, 30)[None, :])
    last = (torch.tensor([0]), torch.tensor([29]))
    z = []
    for value in (-50.0, 50.0):  # far below and far above anything the head expects
        changed = {key: v.clone() for key, v in batch.items()}
        changed["num"][0, 29, 0] = value
        with torch.no_grad():
            z.append(float(model.next_event_surprise(model.hidden(changed), changed, last)[0, -1]))
    assert z[0] < 0 < z[1]
    # The Gaussian head is trained: its NLL is part of the next-event loss.
    with torch.no_grad():
        h = model.hidden(batch)
        with_head = model.next_event_loss(h, batch)
        model.config.num_regression = False
        without = model.next_event_loss(h, batch)
    assert with_head != without
