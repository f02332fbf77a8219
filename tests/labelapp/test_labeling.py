"""Labeling: the pool rule, undo, idempotency, conflicts, leases, double labeling, pages, roles."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from labelapp.models import AuditEvent, BatchItem, Label, PatternTag, PoolState
from labelapp.services.labels import LabelConflict, LabelNotAllowed, label_create, label_undo
from labelapp.services.queue import (
    batch_request_double_labeling,
    queue_next_case,
    queue_progress,
)
from tests.labelapp.factories import make_batch, make_dataset, make_pattern

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_hashing_and_own_artifacts(settings, tmp_path):
    """The personas' passwords are hashed at creation; PBKDF2 costs seconds on a busy machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Snapshots of datasets made here must not meet those of a development database.
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"


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


def test_an_expert_holds_one_case_of_a_batch_at_a_time(batch, expert_user, expert_client):
    """Opening another open case's page, or undoing an answer, moves the expert's one lease."""
    dataset = batch[0].iteration.dataset
    first = queue_next_case(user=expert_user, dataset=dataset)
    other = batch[2]
    assert expert_client.get(reverse("case-detail", args=[other.case_id])).status_code == 200
    held = BatchItem.objects.filter(assigned_to=expert_user, lease_expires_at__gt=timezone.now())
    assert [i.pk for i in held] == [other.pk] and reload(first).assigned_to is None
    label = label_create(user=expert_user, case=other.case, answer="skipped")
    nxt = queue_next_case(user=expert_user, dataset=dataset)
    label_undo(user=expert_user, label=label)
    assert [i.pk for i in held.all()] == [other.pk] and reload(nxt).assigned_to is None


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


# --- pages -----------------------------------------------------------------------------------


def htmx_post(client, url, data):
    return client.post(url, data, HTTP_HX_REQUEST="true")


def test_keyboard_flow_over_htmx_answers_and_moves_on(batch, expert_user, expert_client):
    dataset = batch[0].iteration.dataset
    response = expert_client.post(reverse("queue-next", args=[dataset.name]))
    assert response.status_code == 302
    first = batch[0]
    assert response["Location"] == reverse("case-detail", args=[first.case_id])
    page = expert_client.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    for expected in (
        "Confirm cash-out",
        "confident evidence",
        "Not confirmed",
        "Skip",
        'id="workspace"',
        "Why this case is in the queue",
        "p95",
        "this case",
    ):
        assert expected in html, expected
    key = page.context["idempotency_key"]
    answer = htmx_post(
        expert_client,
        reverse("case-answer", args=[first.case_id]),
        {"answer": "confirmed", "idempotency_key": key, "shown_at": page.context["shown_at"]},
    )
    assert answer.status_code == 200
    assert answer["HX-Push-Url"] == reverse("case-detail", args=[batch[1].case_id])
    assert batch[1].case.case_id in answer.content.decode()
    assert b"<html" not in answer.content  # a fragment, not a page
    label = Label.objects.get(case=first.case)
    assert label.answer == "confirmed" and label.seconds_spent is not None
    # the same submit again (double click): no second label
    again = htmx_post(
        expert_client,
        reverse("case-answer", args=[first.case_id]),
        {"answer": "confirmed", "idempotency_key": key},
    )
    assert again.status_code == 200
    assert Label.objects.filter(case=first.case).count() == 1
    # u: undo brings the first case back
    undo = htmx_post(
        expert_client, reverse("queue-undo", args=[dataset.name]), {"case": batch[1].case_id}
    )
    assert undo.status_code == 200
    assert undo["HX-Push-Url"] == reverse("case-detail", args=[first.case_id])
    assert "Undid your answer" in undo.content.decode()
    assert reload(first.case).pool_state == PoolState.SHOWN


def test_a_refused_answer_says_why(batch, expert_user, second_expert, admin_client):
    case = batch[0].case
    label_create(user=expert_user, case=case, answer="not_confirmed")
    response = htmx_post(
        admin_client, reverse("case-answer", args=[case.pk]), {"answer": "confirmed"}
    )
    assert response.status_code == 409
    assert "already answered by eve-expert" in response.content.decode()


def test_the_last_case_leads_to_an_empty_queue(expert_user, expert_client):
    dataset = make_dataset()
    (item,) = make_batch(dataset, size=1)
    queue_next_case(user=expert_user, dataset=dataset)
    response = htmx_post(
        expert_client, reverse("case-answer", args=[item.case_id]), {"answer": "skipped"}
    )
    assert response.status_code == 200
    assert b"No case is waiting for you" in response.content
    assert response["HX-Push-Url"] == reverse("queue", args=[dataset.name])


def test_experts_see_only_cases_of_their_queue(batch, expert_user, second_expert):
    dataset = batch[0].iteration.dataset
    mine = queue_next_case(user=expert_user, dataset=dataset)
    other = Client()
    other.force_login(second_expert)
    # leased to someone else: refused
    assert other.get(reverse("case-detail", args=[mine.case_id])).status_code == 403
    # a case outside any batch: refused to experts
    outside = dataset.cases.filter(batch_items__isnull=True).first()
    assert other.get(reverse("case-detail", args=[outside.pk])).status_code == 403
    assert (
        other.post(reverse("case-answer", args=[outside.pk]), {"answer": "confirmed"}).status_code
        == 403
    )


def test_admins_see_everything(batch, admin_client):
    dataset = batch[0].iteration.dataset
    outside = dataset.cases.filter(batch_items__isnull=True).first()
    assert admin_client.get(reverse("case-detail", args=[outside.pk])).status_code == 200
    page = admin_client.get(reverse("queue", args=[dataset.name]))
    assert page.status_code == 200 and b'id="batch-items"' in page.content


def test_outsiders_and_anonymous_users_see_nothing(batch, outsider_client, client):
    dataset = batch[0].iteration.dataset
    case = batch[0].case
    urls = [
        reverse("queue", args=[dataset.name]),
        reverse("case-detail", args=[case.pk]),
        reverse("expert-stats"),
        reverse("pattern-list"),
    ]
    for url in urls:
        assert outsider_client.get(url).status_code == 403, url
        assert client.get(url).status_code == 302, url  # to the login page
    assert (
        outsider_client.post(
            reverse("case-answer", args=[case.pk]), {"answer": "confirmed"}
        ).status_code
        == 403
    )
    assert not Label.objects.exists()


def test_experts_cannot_edit_the_taxonomy(expert_client):
    assert expert_client.get(reverse("pattern-list")).status_code == 403
    assert expert_client.post(reverse("pattern-list"), {"name": "x"}).status_code == 403


def test_answers_need_a_csrf_token(batch, expert_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(expert_user)
    item = queue_next_case(user=expert_user, dataset=batch[0].iteration.dataset)
    response = client.post(reverse("case-answer", args=[item.case_id]), {"answer": "confirmed"})
    assert response.status_code == 403
    assert not Label.objects.exists()


def test_admin_edits_the_taxonomy_and_experts_tag_with_it(
    batch, admin_client, expert_user, expert_client
):
    response = admin_client.post(
        reverse("pattern-list"), {"name": "colluding merchant", "description": "fake sales"}
    )
    assert response.status_code == 302
    tag = PatternTag.objects.get(name="colluding merchant")
    item = queue_next_case(user=expert_user, dataset=batch[0].iteration.dataset)
    page = expert_client.get(reverse("case-detail", args=[item.case_id]))
    assert b"colluding merchant" in page.content
    expert_client.post(
        reverse("case-answer", args=[item.case_id]),
        {"answer": "confirmed", "pattern": tag.pk, "comment": "same terminal as known fraud"},
    )
    label = Label.objects.get(case_id=item.case_id)
    assert label.pattern == tag and label.comment == "same terminal as known fraud"


def test_expert_stats_page(batch, expert_user, second_expert, admin_client, expert_client):
    cases = [item.case for item in batch]
    label_create(user=expert_user, case=cases[0], answer="confirmed", seconds_spent=30)
    label_create(user=expert_user, case=cases[1], answer="not_confirmed", seconds_spent=90)
    label_create(user=expert_user, case=cases[2], answer="not_confirmed", seconds_spent=60)
    undone = label_create(user=second_expert, case=cases[3], answer="confirmed", seconds_spent=5)
    label_undo(user=second_expert, label=undone)
    page = admin_client.get(reverse("expert-stats"))
    stats = {s.username: s for s in page.context["stats"]}
    eve = stats["eve-expert"]
    assert (eve.labels, eve.confirmed, eve.not_confirmed) == (3, 1, 2)
    assert eve.confirmation_rate == pytest.approx(1 / 3) and eve.median_seconds == 60
    assert stats["bob-expert"].labels == 0 and stats["bob-expert"].undone == 1
    assert b"label.undo" in page.content  # the audit log, for admins
    own = expert_client.get(reverse("expert-stats"))
    assert [s.username for s in own.context["stats"]] == ["eve-expert"]
    assert own.context["events"] is None


def test_case_page_shows_features_timeline_and_history(batch, expert_user, admin_client):
    case = batch[0].case
    sibling = case.dataset.cases.filter(entity_id=case.entity_id).exclude(pk=case.pk).first()
    label_create(user=expert_user, case=sibling, answer="confirmed", comment="seen before")
    page = admin_client.get(reverse("case-detail", args=[case.pk]))
    ctx = page.context
    rows = {row.name: row for row in ctx["features"]}
    assert set(rows) == {"amount", "customer_nb_tx_7d", "terminal_nb_tx_30d"}
    amounts = sorted(10.0 + 7.5 * i for i in range(20))
    assert rows["amount"].range.low == pytest.approx(float(np.percentile(amounts, 5)))
    assert rows["amount"].range.high == pytest.approx(float(np.percentile(amounts, 95)))
    events = ctx["timeline"].events
    assert events and all(e.entity_id == case.entity_id and e.ts <= case.ts for e in events)
    assert ctx["timeline"].svg["marker_x"] is not None
    assert [lbl.comment for lbl in ctx["entity_labels"]] == ["seen before"]
    assert ctx["contributions"].unavailable.startswith("No model")
    assert b"No model has been trained" in page.content


def test_contributions_come_from_the_current_model(batch, admin_client, tmp_path):
    """pred_contrib of a real LightGBM model saved the way the loop saves one: the shown
    contributions plus the base value add up to the model's raw score for the case."""
    import lightgbm as lgb
    import pandas as pd

    from labelapp.models import ModelVersion

    featurespec = pytest.importorskip(
        "learning.featurespec", reason="learning.featurespec (or learning.features) not merged yet"
    )
    FeatureSpec, build_matrix = featurespec.FeatureSpec, featurespec.build_matrix

    dataset = batch[0].iteration.dataset
    spec = FeatureSpec(
        numeric_columns=["amount", "customer_nb_tx_7d", "terminal_nb_tx_30d"],
        label_derived_columns=["entity_id"],
    )
    rows = list(dataset.cases.order_by("row").values("case_id", "entity_id", "ts", "features"))
    frame = pd.DataFrame(
        [{**r["features"], "entity_id": r["entity_id"], "ts": r["ts"]} for r in rows]
    )
    frame["ts"] = frame["ts"].dt.tz_convert(None)
    positives = frame.iloc[:2][spec.positive_columns]
    X = build_matrix(spec, frame, positives=positives)
    y = (frame["amount"] > 100).astype(int).to_numpy()
    booster = lgb.train(
        {"objective": "binary", "min_data_in_leaf": 2, "verbose": -1, "num_leaves": 4},
        lgb.Dataset(X, y, feature_name=spec.feature_names),
        num_boost_round=10,
    )
    booster.save_model(str(tmp_path / "model.txt"))
    spec.save(tmp_path / "feature_spec.json")
    positives.to_parquet(tmp_path / "positives.parquet", index=False)
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(tmp_path))
    dataset.current_model = version
    dataset.save(update_fields=["current_model"])

    case = batch[0].case
    page = admin_client.get(reverse("case-detail", args=[case.pk]))
    contributions = page.context["contributions"]
    assert contributions.unavailable == ""
    assert contributions.rows and {n for n, _ in contributions.rows} <= set(spec.feature_names)
    raw = booster.predict(X[[case.row]], raw_score=True)[0]
    total = sum(v for _, v in contributions.rows) + contributions.base_value
    assert total == pytest.approx(raw, abs=1e-6)
    assert f"model v{version.pk}".encode() in page.content


def test_an_answer_after_the_lease_ran_out_is_not_stored(batch, expert_user, second_expert):
    dataset = batch[0].iteration.dataset
    item = queue_next_case(user=expert_user, dataset=dataset)
    late = Client()
    late.force_login(expert_user)
    shown = late.get(reverse("case-detail", args=[item.case_id])).context["shown_token"]
    BatchItem.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now())
    assert queue_next_case(user=second_expert, dataset=dataset).pk == item.pk
    url = reverse("case-answer", args=[item.case_id])
    # Without the form's note that the page was shown to them, a refused answer is a bare 403.
    assert htmx_post(late, url, {"answer": "skipped"}).status_code == 403
    response = htmx_post(late, url, {"answer": "skipped", "shown_token": shown})
    assert response.status_code == 200
    assert "ran out and another expert took it" in response.content.decode()
    assert not Label.objects.exists()
    assert reload(item).assigned_to == second_expert


# --- issue 15: what a newcomer tripped over on the labeling pages ------------------------------


def test_case_page_ranks_the_score_and_names_top_score_picks(admin_client):
    from tests.labelapp.factories import shown_scores_create

    dataset = make_dataset(n_cases=20)
    cases = list(dataset.cases.order_by("row"))
    shown_scores_create(
        dataset, [0.581 if c.row == 0 else 0.001 if c.row == 1 else 0.0 for c in cases]
    )
    items = make_batch(dataset, cases=cases[:2])
    BatchItem.objects.filter(pk=items[0].pk).update(
        cluster=-1, rank_in_cluster=0, uncertainty=0.0, reason="top score 0.5810"
    )
    top = admin_client.get(reverse("case-detail", args=[cases[0].pk])).content.decode()
    second = admin_client.get(reverse("case-detail", args=[cases[1].pk])).content.decode()
    # Rank among the current scores: 0.581 is 1st, 0.001 2nd (not "99.8" for both).
    assert "1 of 20" in top and "2 of 20" in second
    assert "top score" in top and "(not clustered)" in top
    assert "<dd>-1</dd>" not in top and "Uncertainty" not in top.split('id="why"')[1][:600]


def test_a_case_outside_the_queue_says_why_and_offers_no_foreign_undo(batch, expert_user):
    first, second = batch[0], batch[1]
    label_create(user=expert_user, case=first.case, answer="not_confirmed")
    label_create(user=expert_user, case=second.case, answer="confirmed")
    client = Client()
    client.force_login(expert_user)
    html = client.get(reverse("case-detail", args=[first.case_id])).content.decode()
    # Read only, and it says so where the keys are; no undo button for the other case.
    assert 'id="read-only"' in html and "Not in your queue" in html
    assert "data-read-only=" in html
    assert 'id="btn-confirm"' not in html and 'id="btn-undo"' not in html
    assert second.case.case_id not in html.split('id="answer"')[1].split("</section>")[0]
    # The case answered last may be undone from its own page.
    html = client.get(reverse("case-detail", args=[second.case_id])).content.decode()
    assert "press u to undo it" in html and 'id="btn-undo"' in html


def test_queue_page_has_the_key_help_and_skip_is_described_one_way(batch, expert_client):
    dataset = batch[0].iteration.dataset
    queue = expert_client.get(reverse("queue", args=[dataset.name])).content.decode()
    case = expert_client.get(reverse("case-detail", args=[batch[0].case_id])).content.decode()
    assert '<dialog id="help"' in queue  # what "?" opens (the case page always had it)
    skip = "you cannot judge it now; the case leaves this batch and may be offered again"
    assert skip in queue and skip in case
    assert "leave it for someone else" not in queue + case
    assert "it may come back later" not in queue + case


def test_queue_page_says_the_earlier_batch_is_no_longer_offered(expert_client, expert_user):
    dataset = make_dataset(n_cases=20)
    old = make_batch(dataset, size=3)
    label_create(user=expert_user, case=old[0].case, answer="confirmed")
    make_batch(dataset, size=2)
    html = expert_client.get(reverse("queue", args=[dataset.name])).content.decode()
    assert 'id="earlier-batches"' in html
    assert "2 cases of iteration #1" in html and "no longer offered" in html


@pytest.mark.parametrize("page", ["queue", "case", "stats", "stats-dataset", "patterns"])
def test_navigation_names_each_page_once(batch, admin_client, page):
    import re

    dataset = batch[0].iteration.dataset
    url = {
        "queue": reverse("queue", args=[dataset.name]),
        "case": reverse("case-detail", args=[batch[0].case_id]),
        "stats": reverse("expert-stats"),
        "stats-dataset": reverse("expert-stats") + f"?dataset={dataset.name}",
        "patterns": reverse("pattern-list"),
    }[page]
    html = admin_client.get(url).content.decode()
    nav = re.search(r"<nav>(.*?)</nav>", html, re.S).group(1)
    links = re.findall(r">([^<>]+)</a>", nav)
    assert len(links) == len(set(links)), links
    assert links.count("Expert stats") == 1 and links.count("Patterns") == 1
