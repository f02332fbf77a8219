"""Races on a real database: two experts answering one case at once, a double-clicked submit.

Each thread has its own database connection (Django opens one per thread), so the two answers
really meet in the database, as two web workers' requests would. Needs ``transactional_db``: the
threads must see each other's commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse

from labelapp.models import AuditEvent, Label, PoolState
from labelapp.services.labels import LabelConflict, label_create
from tests.labelapp.factories import make_batch, make_dataset

pytestmark = pytest.mark.django_db(transaction=True)


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
