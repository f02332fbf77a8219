"""Hidden checks of expert recall: the admin's share, checks that never change P nor the training
set, checks an expert cannot tell apart, and the recall they measure (expert stats, label audit)."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from labelapp.models import AuditEvent, BatchItem, Case, Label, ModelVersion, NoiseFlag, PoolState
from labelapp.selectors.audit_noise import expert_answers
from labelapp.selectors.labels import expert_stats
from labelapp.services.checks import (
    HiddenCheckShareError,
    dataset_hidden_check_share_set,
    share_parse,
)
from labelapp.services.export import _label_counts
from labelapp.services.labels import LabelConflict, label_create, label_undo
from labelapp.services.pipeline import batch_rows, pool_states, previous_batches
from labelapp.services.queue import queue_next_case
from learning.pool import training_targets
from tests.labelapp.api_fixtures import api_client_for
from tests.labelapp.factories import make_batch, make_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def checked_batch():
    """A batch of 4 new cases and 1 hidden check (seed c0000, still P), as the loop writes it."""
    dataset = make_dataset(name="checks", n_cases=30, n_seed=6)
    items = make_batch(dataset, size=4)
    seed = dataset.cases.get(case_id="c0000")
    check = BatchItem.objects.create(
        iteration=items[0].iteration,
        case=seed,
        position=4,
        score=seed.score,
        uncertainty=0.5,
        cluster=1,
        rank_in_cluster=2,
        reason=items[1].reason,
        is_check=True,
    )
    return dataset, items, check


# --- the setting ------------------------------------------------------------------------------


def test_share_is_validated_with_a_clear_error_and_audited(admin_user):
    dataset = make_dataset()
    assert share_parse("5%") == 0.05 and share_parse(0.1) == 0.1 and share_parse("0") == 0.0
    for bad in ("0.3", "25%", "-1", "abc", "", "nan"):
        with pytest.raises(HiddenCheckShareError, match="from 0 \\(off\\) to 0.2"):
            share_parse(bad)
    dataset_hidden_check_share_set(user=admin_user, dataset=dataset, share="10%")
    dataset.refresh_from_db()
    assert dataset.hidden_check_share == 0.1
    event = AuditEvent.objects.get(verb="dataset.hidden_checks")
    assert event.actor == admin_user and event.data == {"share": 0.1, "previous_share": 0.0}


def test_dataset_page_sets_the_share_for_admins_only(admin_client, expert_client):
    dataset = make_dataset()
    url = reverse("dataset-hidden-checks", args=[dataset.name])
    page = admin_client.get(reverse("dataset-detail", args=[dataset.name])).content.decode()
    assert 'id="hidden-checks"' in page and "Hidden checks of expert recall" in page
    assert (
        'id="hidden-checks"'
        not in expert_client.get(reverse("dataset-detail", args=[dataset.name])).content.decode()
    )
    assert expert_client.post(url, {"percent": "10"}).status_code == 403
    response = admin_client.post(url, {"percent": "40"}, follow=True)
    assert "Hidden checks not changed" in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.hidden_check_share == 0.0  # bad input changes nothing
    response = admin_client.post(url, {"percent": "10"}, follow=True)
    assert "Hidden checks: 10% of each new batch." in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.hidden_check_share == 0.1


# --- answers change nothing -------------------------------------------------------------------


def _training_set(dataset):
    states = pool_states(dataset)
    s, weight = training_targets(states)
    return states, s, weight


def test_check_answers_never_change_p_nor_the_training_set(checked_batch, expert_user, admin_user):
    dataset, items, check = checked_batch
    before_states, before_s, before_w = _training_set(dataset)
    batches_before = previous_batches(dataset)
    rows_before = [r.tolist() for r in batch_rows(dataset)]

    label = label_create(user=expert_user, case=check.case, answer="not_confirmed")
    assert label.batch_item == check  # the case's open item is the check
    check.refresh_from_db()
    check.case.refresh_from_db()
    assert check.status == BatchItem.Status.ANSWERED
    assert check.case.pool_state == PoolState.POSITIVE and check.case.seed_positive

    states, s, w = _training_set(dataset)
    np.testing.assert_array_equal(states, before_states)
    np.testing.assert_array_equal(s, before_s)
    np.testing.assert_array_equal(w, before_w)
    # Nor the batch's confirm rate, the positives-left estimate's batches, the noise audit's
    # answers, nor the label counts of an exported model card.
    assert previous_batches(dataset) == batches_before
    assert batches_before[0]["size"] == 4
    assert [r.tolist() for r in batch_rows(dataset)] == rows_before
    assert check.case.row not in rows_before[0]
    assert check.case.row not in expert_answers(dataset).rows
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir="unused")
    assert _label_counts(version) == {"confirmed": 0, "not_confirmed": 0, "skipped": 0}

    # Undo works as on any case: a new row, the check open again, the case still P.
    undo = label_undo(user=expert_user, label=label)
    assert undo.answer == Label.Answer.UNDONE and undo.undoes == label
    check.refresh_from_db()
    assert check.status == BatchItem.Status.OPEN and check.assigned_to == expert_user
    label_create(user=expert_user, case=check.case, answer="confirmed")
    check.case.refresh_from_db()
    assert check.case.pool_state == PoolState.POSITIVE
    np.testing.assert_array_equal(_training_set(dataset)[1], before_s)
    # A regular answer still moves its case as before.
    label_create(user=expert_user, case=items[0].case, answer="confirmed")
    items[0].case.refresh_from_db()
    assert items[0].case.pool_state == PoolState.CONFIRMED
    assert previous_batches(dataset)[0]["confirmed"] == 1


def test_a_seed_checked_again_takes_a_fresh_answer(checked_batch, expert_user, second_expert):
    dataset, items, check = checked_batch
    label_create(user=expert_user, case=check.case, answer="confirmed")
    with pytest.raises(LabelConflict, match="already answered"):
        label_create(user=second_expert, case=check.case, answer="confirmed")
    later = make_batch(dataset, size=1)
    again = BatchItem.objects.create(
        iteration=later[0].iteration, case=check.case, position=1, is_check=True
    )
    # Earlier checks of the seed do not count on the new one: the same expert answers it afresh.
    label = label_create(user=expert_user, case=check.case, answer="not_confirmed")
    assert label.batch_item == again
    check.case.refresh_from_db()
    assert check.case.pool_state == PoolState.POSITIVE


def test_a_check_is_never_sent_for_a_second_look_in_its_own_batch(checked_batch, admin_user):
    from labelapp.services.audit_noise import noise_flags_send_for_review

    dataset, items, check = checked_batch
    flag = NoiseFlag.objects.create(dataset=dataset, case=check.case, kind="seed")
    sent, skipped = noise_flags_send_for_review(user=admin_user, flags=[flag], reviewer=admin_user)
    assert sent == 0 and "hidden check" in skipped[0]
    check.refresh_from_db()
    assert check.is_check and check.assigned_to is None


# --- indistinguishable ------------------------------------------------------------------------


def test_an_expert_cannot_tell_a_check_apart(checked_batch, expert_user, expert_client):
    dataset, items, check = checked_batch
    regular = items[1]
    for item in (regular, check):
        item.assigned_to = expert_user
        item.save()
    pages = {}
    for name, item in (("regular", regular), ("check", check)):
        page = expert_client.get(reverse("case-detail", args=[item.case_id])).content.decode()
        pages[name] = page
        assert 'id="pool-state">In a batch<' in page
        assert "Seed positive" not in page and "hidden check" not in page.lower()
    api = api_client_for(expert_user)
    data = api.get(reverse("api-case-detail", args=[check.case_id])).json()
    assert data["seed_positive"] is False and data["pool_state"] == "shown"
    assert [b["reason"] for b in data["batch_items"]] == [regular.reason]
    assert "is_check" not in data["batch_items"][0]
    # Filtering by pool state does not find it among the seeds, but among the cases shown.
    url = reverse("api-case-list", args=[dataset.name])
    assert api.get(url, {"pool_state": "P"}).json()["count"] == 0
    shown = api.get(url, {"pool_state": "shown"}).json()
    # (opening the check's page gave the regular case's lease back: one lease per expert)
    assert [(c["id"], c["pool_state"], c["seed_positive"]) for c in shown["results"]] == [
        (check.case_id, "shown", False)
    ]
    # After the answer the expert sees what a regular case would show; the case is still P.
    api.post(reverse("api-label-list"), {"case": check.case_id, "answer": "confirmed"})
    data = api.get(reverse("api-case-detail", args=[check.case_id])).json()
    assert data["pool_state"] == "confirmed" and data["seed_positive"] is False
    assert [lb["answer"] for lb in data["labels"]] == ["confirmed"]
    assert Case.objects.get(pk=check.case_id).pool_state == PoolState.POSITIVE
    assert api.get(url, {"pool_state": "confirmed"}).json()["count"] == 1
    page = expert_client.get(
        reverse("iteration-detail", args=[dataset.name, check.iteration.number])
    ).content.decode()
    assert "seed positive" not in page.lower() and "hidden check" not in page.lower()


def test_the_queue_hands_out_checks_like_any_case(checked_batch, expert_user):
    dataset, items, check = checked_batch
    handed = []
    while (item := queue_next_case(user=expert_user, dataset=dataset)) is not None:
        handed.append(item.pk)
        label_create(user=expert_user, case=item.case, answer="skipped")
    assert check.pk in handed and len(handed) == 5


def test_admins_see_which_items_are_checks(checked_batch, admin_client, expert_user):
    dataset, items, check = checked_batch
    label_create(user=expert_user, case=check.case, answer="confirmed")
    page = admin_client.get(
        reverse("iteration-detail", args=[dataset.name, check.iteration.number])
    ).content.decode()
    assert page.count(">hidden check</span>") == 1
    assert "1 hidden check of expert recall in this batch" in page
    assert "1 answered, 1 confirmed" in page
    queue = admin_client.get(reverse("queue", args=[dataset.name])).content.decode()
    assert queue.count(">hidden check</span>") == 1
    case = admin_client.get(reverse("case-detail", args=[check.case_id])).content.decode()
    assert 'id="check-note"' in case


# --- what the checks measure ------------------------------------------------------------------


def test_expert_stats_show_recall_on_checks_with_an_interval(
    checked_batch, expert_user, second_expert, admin_client, expert_client
):
    dataset, items, check = checked_batch
    label_create(user=expert_user, case=check.case, answer="confirmed")
    label_create(user=expert_user, case=items[0].case, answer="not_confirmed")
    stats = {s.username: s for s in expert_stats(dataset=dataset, with_checks=True)}
    eve = stats[expert_user.username]
    assert eve.labels == 1 and eve.confirmed == 0  # the check apart
    assert (eve.checks.confirmed, eve.checks.answered) == (1, 1)
    assert eve.checks.low == pytest.approx(0.2065, abs=1e-3) and eve.checks.high == 1.0
    page = admin_client.get(reverse("expert-stats"), {"dataset": dataset.name}).content.decode()
    assert "Recall on hidden checks" in page and "100% " in page and "n=1)" in page
    # An expert's own line counts the check as the answer it looked like, and no recall.
    own = expert_client.get(reverse("expert-stats"), {"dataset": dataset.name}).content.decode()
    assert "hidden checks" not in own.lower()
    (mine,) = expert_stats(dataset=dataset, user=expert_user)
    assert mine.labels == 2 and mine.confirmed == 1 and mine.checks is None


def test_label_audit_shows_each_answerers_recall_on_checks(
    checked_batch, expert_user, admin_client
):
    dataset, items, check = checked_batch
    label_create(user=expert_user, case=check.case, answer="not_confirmed")
    label_create(user=expert_user, case=items[0].case, answer="confirmed")
    NoiseFlag.objects.create(dataset=dataset, case=items[0].case, kind="answer", suspicion=0.9)
    page = admin_client.get(reverse("label-audit", args=[dataset.name])).content.decode()
    assert "recall on hidden checks" in page
    assert f"{expert_user.username} <span" in page and "0% " in page and "n=1)" in page


# --- the loop ---------------------------------------------------------------------------------


@pytest.fixture
def loop_dataset(transactional_db, tmp_path, settings):
    from tests.labelapp.loop_data import make_loop_dataset

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    dataset, _ = make_loop_dataset("checkloop", tmp_path / "snapshots", n_cases=1500)
    return dataset


def _run(dataset, admin_user):
    from labelapp.models import Iteration
    from labelapp.services.iterations import iteration_params_clean
    from labelapp.services.pipeline import iteration_execute

    params = {"batch_size": 20, "n_clusters": 4, "pool_size": 100, "n_estimators": 30}
    iteration = Iteration.objects.create(
        dataset=dataset,
        number=dataset.iterations.count() + 1,
        params=iteration_params_clean(params, dataset=dataset),
        launched_by=admin_user,
    )
    assert iteration_execute(iteration_id=iteration.pk)["status"] == "done", iteration.log
    iteration.refresh_from_db()
    return iteration


def test_iterations_hide_checks_in_the_batch_and_train_as_before(
    loop_dataset, admin_user, expert_user
):
    import pandas as pd

    dataset = loop_dataset
    dataset_hidden_check_share_set(user=admin_user, dataset=dataset, share=0.1)
    first = _run(dataset, admin_user)
    items = list(first.batch.select_related("case").order_by("position"))
    checks = [item for item in items if item.is_check]
    assert len(items) == 22 and len(checks) == 2 and first.metrics["hidden_checks"] == 2
    assert [item.position for item in items] == list(range(22))
    assert all(c.case.pool_state == PoolState.POSITIVE and c.case.seed_positive for c in checks)
    assert all(i.case.pool_state == PoolState.SHOWN for i in items if not i.is_check)
    # Written like the others: seeds score high, so they join the top-score part, whose ranks
    # count them among its cases (no two items share a rank).
    regular_clusters = {i.cluster for i in items if not i.is_check}
    for check in checks:
        assert check.cluster in regular_clusters and check.required_answers == 1
        assert check.reason.startswith("top score ") and "not clustered" in check.reason
    top = [i for i in items if i.cluster == -1]
    assert sorted(i.rank_in_cluster for i in top) == list(range(len(top)))
    for item in top:
        assert f"the {item.rank_in_cluster + 1}" in item.reason
    assert "and 2 hidden checks" in first.log

    before = pool_states(dataset)
    for check in checks:
        label_create(user=expert_user, case=check.case, answer="not_confirmed", batch_item=check)
    np.testing.assert_array_equal(pool_states(dataset), before)

    second = _run(dataset, admin_user)
    # The second model trained on the same P/U as if no check had been answered.
    assert second.model_version.data_snapshot["pool"]["P"] == int((before == "P").sum())
    positives = pd.read_parquet(f"{second.model_version.artifact_dir}/positives.parquet")
    assert len(positives) == int(((before == "P") | (before == "confirmed")).sum())
    assert second.metrics["previous_batch"]["size"] == 20
    assert second.metrics["previous_batch"]["not_confirmed"] == 0
    # New checks prefer seeds never checked before.
    again = set(second.batch.filter(is_check=True).values_list("case_id", flat=True))
    assert len(again) == 2 and not again & {c.case_id for c in checks}


def test_the_similar_panel_never_lists_a_check_to_an_expert(
    tmp_path, settings, expert_client, admin_client
):
    from labelapp.selectors.similar import similar_cases
    from labelapp.services.similar import neighbor_index_build
    from tests.labelapp.factories import make_vector_dataset
    from tests.labelapp.test_similar_audit import SEEDS, vectors

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    dataset = make_vector_dataset("vec", tmp_path / "snapshots", vectors(), SEEDS)
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(tmp_path / "v1"))
    dataset.current_model = version
    dataset.save(update_fields=["current_model"])
    neighbor_index_build(model_version=version)
    case = Case.objects.get(dataset=dataset, row=100)
    (item,) = make_batch(dataset, cases=[case])
    nearest = similar_cases(case, k=5).confirmed[0].case
    BatchItem.objects.create(iteration=item.iteration, case=nearest, position=1, is_check=True)
    assert expert_client.get(reverse("case-detail", args=[case.pk])).status_code == 200
    url = reverse("case-similar", args=[case.pk])
    # The expert may have met that seed as a batch case: listed as a seed it would be given away.
    assert nearest.case_id not in expert_client.get(url).content.decode()
    assert nearest.case_id in admin_client.get(url).content.decode()


def test_the_pool_counts_move_for_an_expert_as_for_any_case(
    checked_batch, expert_user, expert_client, admin_client
):
    import re

    dataset, items, check = checked_batch

    def pool(client) -> dict[str, int]:
        page = client.get(reverse("dataset-detail", args=[dataset.name])).content.decode()
        rows = re.findall(r'data-state="(\w+)"><th>[^<]*</th><td class="num">(\d+)</td>', page)
        labeled = re.search(r'id="n-labeled">(\d+)<', page).group(1)
        return {**{state: int(n) for state, n in rows}, "labeled": int(labeled)}

    assert pool(expert_client)["P"] == 5 and pool(expert_client)["shown"] == 5
    label_create(user=expert_user, case=check.case, answer="confirmed")
    seen = pool(expert_client)
    assert (seen["P"], seen["shown"], seen["confirmed"], seen["labeled"]) == (5, 4, 1, 1)
    truth = pool(admin_client)
    assert (truth["P"], truth["shown"], truth["confirmed"], truth["labeled"]) == (6, 4, 0, 0)
    api = api_client_for(expert_user)
    counts = api.get(reverse("api-dataset-detail", args=[dataset.name])).json()["pool_counts"]
    assert counts["P"] == 5 and counts["confirmed"] == 1
    listing = expert_client.get(reverse("dataset-list")).content.decode()
    assert 'class="num n-labeled">1<' in listing
