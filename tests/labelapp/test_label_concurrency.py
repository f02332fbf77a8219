"""Races on a real database: two experts answering one case at once, a double-clicked submit,
one expert asking for the next case twice at once.

Each thread has its own database connection (Django opens one per thread), so the two answers
really meet in the database, as two web workers' requests would. Needs ``transactional_db``: the
threads must see each other's commits. Run them on PostgreSQL with
``DATABASE_URL=postgres://...``; on SQLite every write transaction runs alone (BEGIN IMMEDIATE),
so the races that need two transactions to overlap are skipped there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from labelapp.models import AuditEvent, BatchItem, Label, PoolState
from labelapp.services.labels import LabelConflict, label_create
from labelapp.services.queue import queue_next_case
from tests.labelapp.api_fixtures import api_client_for
from tests.labelapp.factories import make_batch, make_dataset

pytestmark = pytest.mark.django_db(transaction=True)

needs_overlapping_transactions = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="SQLite runs write transactions one at a time (BEGIN IMMEDIATE): two requests cannot "
    "overlap there; run with DATABASE_URL=postgres://... to test this race",
)


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released at the same instant; return results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def worker(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.fixture(autouse=True)
def fast_hashing_and_own_artifacts(settings, tmp_path):
    """The personas' passwords are hashed at creation; PBKDF2 costs seconds on a busy machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Snapshots of datasets made here must not meet those of a development database.
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"


@pytest.fixture
def item():
    dataset = make_dataset(name=f"race-{connection.vendor}")
    return make_batch(dataset, size=1)[0]


def test_two_experts_answer_at_once_one_label_one_refusal(item, expert_user, second_expert):
    case = item.case
    results = run_together(
        lambda: label_create(user=expert_user, case=case, answer="confirmed"),
        lambda: label_create(user=second_expert, case=case, answer="not_confirmed"),
    )
    stored = [r for r in results if isinstance(r, Label)]
    refused = [r for r in results if isinstance(r, LabelConflict)]
    assert len(stored) == 1 and len(refused) == 1, results
    assert "already answered by" in str(refused[0])
    assert Label.objects.filter(case=case).count() == 1
    case.refresh_from_db()
    expected = {"confirmed": PoolState.CONFIRMED, "not_confirmed": PoolState.NOT_CONFIRMED}
    assert case.pool_state == expected[stored[0].answer]
    assert AuditEvent.objects.filter(verb="label.create").count() == 1


def test_double_submit_with_one_key_stores_one_label(item, expert_user):
    case = item.case
    results = run_together(
        *[
            lambda: label_create(
                user=expert_user, case=case, answer="confirmed", idempotency_key="dbl-click"
            )
        ]
        * 2
    )
    assert all(isinstance(r, Label) for r in results), results
    assert results[0].pk == results[1].pk
    assert Label.objects.filter(case=case).count() == 1


def test_two_browsers_post_the_same_case_over_http(item, expert_user, admin_user):
    """The same race through the answer endpoint: the expert holding the case and an admin
    (who may answer anything) post at once: one answer stored, one clear 409."""
    from labelapp.services.queue import queue_next_case

    assert queue_next_case(user=expert_user, dataset=item.iteration.dataset).pk == item.pk
    url = reverse("case-answer", args=[item.case_id])
    clients = []
    for user in (expert_user, admin_user):
        c = Client()
        c.force_login(user)
        clients.append(c)
    responses = run_together(
        *[
            (lambda c=c, a=a: c.post(url, {"answer": a}, HTTP_HX_REQUEST="true"))
            for c, a in zip(clients, ("confirmed", "not_confirmed"), strict=True)
        ]
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409], codes
    refusal = next(r for r in responses if r.status_code == 409)
    assert "already answered by" in refusal.content.decode()
    assert Label.objects.filter(case_id=item.case_id).count() == 1


def test_one_key_sent_at_once_is_stored_once_and_replayed(item, expert_user):
    """Issue 15, D7: the same idempotency key sent four times at once is one 201 and three
    replays (200, the first's body), one label."""
    assert queue_next_case(user=expert_user, dataset=item.iteration.dataset).pk == item.pk
    body = {"case": item.case_id, "answer": "confirmed", "idempotency_key": "dbl-click"}
    clients = [api_client_for(expert_user) for _ in range(4)]
    responses = run_together(
        *[(lambda c=c: c.post("/api/labels/", body, format="json")) for c in clients]
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201], responses
    assert len({str(r.json()) for r in responses}) == 1
    assert Label.objects.filter(case_id=item.case_id).count() == 1


def test_skipped_twice_without_a_key_is_stored_once(item, expert_user):
    """Issue 15, D9: a repeated "skipped" without a key is refused (409), in turn or at once."""
    assert queue_next_case(user=expert_user, dataset=item.iteration.dataset).pk == item.pk
    client = api_client_for(expert_user)
    body = {"case": item.case_id, "answer": "skipped"}
    assert client.post("/api/labels/", body, format="json").status_code == 201
    again = client.post("/api/labels/", body, format="json")
    assert again.status_code == 409 and "already skipped" in again.json()["detail"]
    assert Label.objects.filter(case_id=item.case_id).count() == 1


def test_two_skips_at_once_store_one_row(expert_user):
    (item,) = make_batch(make_dataset(name=f"skip-{connection.vendor}"), size=1)
    results = run_together(
        *[lambda: label_create(user=expert_user, case=item.case, answer="skipped")] * 2
    )
    assert sorted(type(r).__name__ for r in results) == ["Label", "LabelConflict"], results
    assert Label.objects.filter(case=item.case).count() == 1


@needs_overlapping_transactions
def test_one_expert_asking_for_the_next_case_at_once_gets_one_lease(expert_user):
    """Issue 15, D8: four "next case" requests of one expert at once lease one case."""
    dataset = make_dataset(name="next-race")
    make_batch(dataset, size=6)
    results = run_together(*[lambda: queue_next_case(user=expert_user, dataset=dataset)] * 4)
    assert all(isinstance(r, BatchItem) for r in results), results
    assert len({r.pk for r in results}) == 1, [r.pk for r in results]
    assert BatchItem.objects.filter(assigned_to=expert_user).count() == 1


@needs_overlapping_transactions
def test_two_experts_asking_at_once_get_two_cases(expert_user, second_expert):
    """Taking turns per expert does not make different experts wait for or share a case."""
    dataset = make_dataset(name="next-two")
    make_batch(dataset, size=6)
    results = run_together(
        lambda: queue_next_case(user=expert_user, dataset=dataset),
        lambda: queue_next_case(user=second_expert, dataset=dataset),
    )
    assert len({r.pk for r in results}) == 2, results
