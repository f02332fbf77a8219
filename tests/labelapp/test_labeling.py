"""Labeling: the pool rule, undo, idempotency, conflicts, leases, double labeling, pages, roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labelapp.models import AuditEvent, BatchItem, Label, PoolState
from labelapp.services.labels import LabelConflict, LabelNotAllowed, label_create, label_undo
from labelapp.services.queue import (
    batch_request_double_labeling,
    queue_next_case,
    queue_progress,
)
from tests.labelapp.factories import make_batch, make_dataset, make_pattern

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch():
    dataset = make_dataset()
    return make_batch(dataset, size=4)


def reload(obj):
    obj.refresh_from_db()
    return obj


# --- services: pool rule, undo, audit ------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "pool_state", "item_status"),
    [
        ("confirmed", PoolState.CONFIRMED, BatchItem.Status.ANSWERED),
        ("not_confirmed", PoolState.NOT_CONFIRMED, BatchItem.Status.ANSWERED),
        ("skipped", PoolState.SKIPPED, BatchItem.Status.SKIPPED),
    ],
)
def test_answer_applies_the_pool_rule(batch, expert_user, answer, pool_state, item_status):
    item = batch[0]
    label = label_create(user=expert_user, case=item.case, answer=answer)
    assert label.batch_item == item  # found from the case's open batch item
    assert reload(item.case).pool_state == pool_state
    assert reload(item).status == item_status
    event = AuditEvent.objects.get(verb="label.create")
    assert event.actor == expert_user
    assert event.data["answer"] == answer and event.data["previous_answer"] == ""
    assert event.via == "page"


def test_pattern_and_comment_are_kept_with_a_confirmation(batch, expert_user):
    tag = make_pattern()
    label = label_create(
        user=expert_user, case=batch[0].case, answer="confirmed", pattern=tag, comment=" merchant "
    )
    assert reload(label).pattern == tag and label.comment == "merchant"
    other = label_create(user=expert_user, case=batch[1].case, answer="skipped", pattern=tag)
    assert other.pattern is None  # a tag only describes confirmed cash-out


def test_undo_restores_the_pool_state_and_keeps_history(batch, expert_user):
    item = batch[0]
    label = label_create(user=expert_user, case=item.case, answer="confirmed", via="api")
    undo = label_undo(user=expert_user, label=label, via="api")
    assert undo.answer == Label.Answer.UNDONE and undo.undoes == label
    assert undo.previous_answer == "confirmed"
    assert reload(item.case).pool_state == PoolState.SHOWN
    item = reload(item)
    assert item.status == BatchItem.Status.OPEN and item.assigned_to == expert_user
    assert Label.objects.filter(case=item.case).count() == 2  # append-only
    event = AuditEvent.objects.get(verb="label.undo")
    assert event.data["previous_answer"] == "confirmed" and event.via == "api"
    # answering again after the undo is allowed, and records what came before
    again = label_create(user=expert_user, case=item.case, answer="not_confirmed")
    assert again.previous_answer == "undone"
    assert reload(item.case).pool_state == PoolState.NOT_CONFIRMED


def test_only_own_recent_answers_can_be_undone(batch, expert_user, second_expert):
    label = label_create(user=expert_user, case=batch[0].case, answer="confirmed")
    with pytest.raises(LabelNotAllowed, match="your own"):
        label_undo(user=second_expert, label=label)
    Label.objects.filter(pk=label.pk).update(created_at=timezone.now() - timedelta(days=1))
    with pytest.raises(LabelNotAllowed, match="cannot be undone"):
        label_undo(user=expert_user, label=reload(label))
    assert reload(batch[0].case).pool_state == PoolState.CONFIRMED


def test_undo_twice_is_refused(batch, expert_user):
    label = label_create(user=expert_user, case=batch[0].case, answer="skipped")
    label_undo(user=expert_user, label=label)
    with pytest.raises(LabelConflict, match="already undone"):
        label_undo(user=expert_user, label=label)


def test_same_idempotency_key_returns_the_same_label(batch, expert_user):
    case = batch[0].case
    first = label_create(user=expert_user, case=case, answer="confirmed", idempotency_key="k-1")
    second = label_create(user=expert_user, case=case, answer="confirmed", idempotency_key="k-1")
    assert first.pk == second.pk
    assert Label.objects.filter(case=case).count() == 1
    assert AuditEvent.objects.filter(verb="label.create").count() == 1


def test_second_expert_is_told_the_case_was_answered(batch, expert_user, second_expert):
    case = batch[0].case
    label_create(user=expert_user, case=case, answer="confirmed")
    with pytest.raises(LabelConflict, match="already answered by eve-expert"):
        label_create(user=second_expert, case=case, answer="not_confirmed")
    assert Label.objects.filter(case=case).count() == 1
    assert reload(case).pool_state == PoolState.CONFIRMED


def test_a_skip_does_not_block_a_later_answer(batch, expert_user, second_expert):
    item = batch[0]
    label_create(user=expert_user, case=item.case, answer="skipped")
    label_create(user=second_expert, case=item.case, answer="confirmed")
    assert reload(item.case).pool_state == PoolState.CONFIRMED
    assert reload(item).status == BatchItem.Status.ANSWERED


def test_unknown_answer_is_refused(batch, expert_user):
    with pytest.raises(ValueError, match="unknown answer"):
        label_create(user=expert_user, case=batch[0].case, answer="clean")


def test_label_outside_a_batch_sets_the_pool_state(expert_user):
    dataset = make_dataset()
    case = dataset.cases.get(case_id="c0010")
    label = label_create(user=expert_user, case=case, answer="confirmed", via="api")
    assert label.batch_item is None
    assert reload(case).pool_state == PoolState.CONFIRMED
    label_undo(user=expert_user, label=label)
    assert reload(case).pool_state == PoolState.UNLABELED


# --- queue and leases ------------------------------------------------------------------------


def test_two_experts_never_hold_the_same_case(batch, expert_user, second_expert):
    dataset = batch[0].iteration.dataset
    first = queue_next_case(user=expert_user, dataset=dataset)
    other = queue_next_case(user=second_expert, dataset=dataset)
    assert first.pk != other.pk
    # asking again gives the same leased case back, not a new one
    assert queue_next_case(user=expert_user, dataset=dataset).pk == first.pk
    assert queue_progress(dataset=dataset, user=expert_user)["mine"] == 1


def test_an_expired_lease_returns_the_case_to_the_queue(expert_user, second_expert):
    dataset = make_dataset()
    (item,) = make_batch(dataset, size=1)
    assert queue_next_case(user=expert_user, dataset=dataset).pk == item.pk
    assert queue_next_case(user=second_expert, dataset=dataset) is None
    BatchItem.objects.filter(pk=item.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert queue_next_case(user=second_expert, dataset=dataset).pk == item.pk


def test_the_queue_walks_the_batch_in_order_and_ends(batch, expert_user):
    dataset = batch[0].iteration.dataset
    seen = []
    while (item := queue_next_case(user=expert_user, dataset=dataset)) is not None:
        seen.append(item.pk)
        label_create(user=expert_user, case=item.case, answer="not_confirmed", batch_item=item)
    assert seen == [item.pk for item in batch]
    assert queue_progress(dataset=dataset)["answered"] == 4


def test_only_the_newest_batch_is_served(expert_user):
    dataset = make_dataset()
    make_batch(dataset, size=2)
    newest = make_batch(dataset, size=2)
    assert queue_next_case(user=expert_user, dataset=dataset).pk == newest[0].pk


def test_double_labeling_needs_two_different_experts(expert_user, second_expert, admin_user):
    dataset = make_dataset()
    items = make_batch(dataset, size=4)
    marked = batch_request_double_labeling(
        user=admin_user, iteration=items[0].iteration, fraction=0.5, random_state=0
    )
    assert marked == 2
    item = BatchItem.objects.filter(required_answers=2).order_by("position").first()
    first = label_create(user=expert_user, case=item.case, answer="confirmed", batch_item=item)
    assert first.review_round == 1 and reload(item).status == BatchItem.Status.OPEN
    with pytest.raises(LabelConflict, match="You already answered"):
        label_create(user=expert_user, case=item.case, answer="confirmed", batch_item=item)
    # the first expert is not offered it again; the second is
    offered = []
    while (nxt := queue_next_case(user=expert_user, dataset=dataset)) is not None:
        offered.append(nxt.pk)
        label_create(user=expert_user, case=nxt.case, answer="skipped", batch_item=nxt)
    assert item.pk not in offered
    assert queue_next_case(user=second_expert, dataset=dataset).pk == item.pk
    second = label_create(user=second_expert, case=item.case, answer="not_confirmed")
    assert second.review_round == 2
    assert reload(item).status == BatchItem.Status.ANSWERED
    # they disagree: precision first, the case does not join P
    assert reload(item.case).pool_state == PoolState.NOT_CONFIRMED
