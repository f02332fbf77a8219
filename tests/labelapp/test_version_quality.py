"""Model quality across versions, without ground truth, on versions the pipeline built."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelapp.models import Dataset
from labelapp.selectors import version_quality as vq
from labelapp.services.labels import label_undo
from tests.labelapp.api_fixtures import api_client_for
from tests.labelapp.loop_data import make_loop_dataset
from tests.labelapp.version_data import answer_batch, loop_in_process, run_iteration


@pytest.fixture
def two_versions(transactional_db, tmp_path, settings, expert_user):
    """v1; its batch answered by the truth; v2 (trained on those answers); half of v2's batch."""
    loop_in_process(settings, tmp_path)
    dataset, cases = make_loop_dataset("quality", tmp_path / "snapshots", n_cases=1500)
    v1 = run_iteration(dataset)
    first = answer_batch(v1, cases, expert_user)
    v2 = run_iteration(dataset)
    second = answer_batch(v2, cases, expert_user, limit=10)
    return dataset, v1, v2, first, second


def test_batch_confirm_rate_and_positives_left(two_versions):
    dataset, v1, v2, first, second = two_versions
    q1, q2 = vq.dataset_version_quality(dataset)
    assert (q1.version_id, q2.version_id) == (v1.pk, v2.pk)
    confirmed = sum(label.answer == "confirmed" for label in first)
    assert (q1.batch_confirmed, q1.batch_answered) == (confirmed, len(first))
    assert q1.batch_confirm_rate == pytest.approx(confirmed / len(first), abs=1e-4)
    assert q2.batch_answered == len(second) and q2.batch_size == v2.iteration.batch.count()
    # No batch was answered when v1 was trained: no estimate; v2's comes with its interval.
    assert q1.positives_left is None
    stopping = v2.iteration.metrics["stopping"]
    assert q2.positives_left == stopping["estimated_positives_left"]
    assert q2.positives_left_low <= q2.positives_left <= q2.positives_left_high


def test_precision_counts_only_answers_after_training_and_not_undone(two_versions, monkeypatch):
    dataset, v1, v2, first, second = two_versions
    monkeypatch.setattr(vq, "TOP_K_MIN", 10**6)  # top k = every case: the count is exact
    q1, q2 = vq.dataset_version_quality(dataset)
    assert q1.top_k == dataset.n_cases
    # v1 was trained before both batches were answered; v2 after the first one.
    assert q1.after_answered == len(first) + len(second)
    assert q2.after_answered == len(second)
    assert q2.after_confirmed == sum(label.answer == "confirmed" for label in second)
    assert q2.parent_id == v1.pk and q2.parent_overlap == 1.0
    label_undo(user=second[0].user, label=second[0])
    assert vq.version_quality(v2).after_answered == len(second) - 1


def test_top_k_is_one_percent_at_least_100_and_overlap_is_a_share(two_versions):
    dataset, v1, v2, first, second = two_versions
    assert vq.top_k(1500) == 100 and vq.top_k(1_169_723) == 11_698 and vq.top_k(50) == 50
    q1, q2 = vq.dataset_version_quality(dataset)
    assert q1.parent_overlap is None and 0.0 <= q2.parent_overlap <= 1.0
    assert q2.after_answered <= len(second) and q1.after_answered <= len(first) + len(second)


def test_dataset_page_chart_compare_page_and_api(two_versions, expert_client, expert_user):
    dataset, v1, v2, first, second = two_versions
    page = expert_client.get(reverse("dataset-detail", args=[dataset.name])).content.decode()
    assert 'id="version-quality"' in page and "Model quality across versions" in page
    assert f'data-x="{v1.pk}"' in page and f'data-x="{v2.pk}"' in page
    assert f'<tr data-version="{v2.pk}">' in page
    compare = expert_client.get(
        reverse("model-compare", args=[dataset.name]), {"a": v1.pk, "b": v2.pk}
    ).content.decode()
    assert 'id="quality-compare"' in compare and "batch confirm rate" in compare
    q1 = vq.version_quality(v1)
    assert f"({q1.batch_confirmed} of {q1.batch_answered})" in compare
    detail = expert_client.get(reverse("model-detail", args=[v1.pk])).content.decode()
    assert 'id="quality"' in detail and f"({q1.batch_confirmed} of {q1.batch_answered})" in detail
    body = api_client_for(expert_user).get(f"/api/models/{v2.pk}/").json()
    q2 = vq.version_quality(v2)
    assert body["quality"]["after_answered"] == q2.after_answered
    assert body["quality"]["parent_overlap"] == q2.parent_overlap
    assert body["quality"]["positives_left_high"] == q2.positives_left_high


def test_hidden_checks_count_in_neither_figure(
    transactional_db, tmp_path, settings, expert_user, monkeypatch
):
    loop_in_process(settings, tmp_path)
    dataset, cases = make_loop_dataset("quality-checks", tmp_path / "snapshots", n_cases=1500)
    Dataset.objects.filter(pk=dataset.pk).update(hidden_check_share=0.2)
    dataset.refresh_from_db()
    v1 = run_iteration(dataset)
    checks = v1.iteration.batch.filter(is_check=True).count()
    assert checks > 0
    labels = answer_batch(v1, cases, expert_user)  # every item, the checks too (all confirmed)
    real = [label for label in labels if not label.batch_item.is_check]
    monkeypatch.setattr(vq, "TOP_K_MIN", 10**6)
    (q1,) = vq.dataset_version_quality(dataset)
    assert q1.batch_size == len(real) == len(labels) - checks
    assert q1.batch_answered == len(real) and q1.after_answered == len(real)
    assert q1.batch_confirmed == sum(label.answer == "confirmed" for label in real)
