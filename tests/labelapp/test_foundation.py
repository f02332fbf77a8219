"""The plumbing: roles on pages, a task through a real worker, libraries free of Django."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.urls import reverse

from labelapp.tasks.system import ping


def test_login_page_is_served(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_pages_require_login(client, db):
    response = client.get(reverse("dataset-list"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_user_without_role_sees_nothing(outsider_client):
    assert outsider_client.get(reverse("dataset-list")).status_code == 403


def test_expert_sees_dataset_list(expert_client):
    assert expert_client.get(reverse("dataset-list")).status_code == 200


@pytest.mark.worker
def test_task_round_trips_through_a_real_worker(celery_worker, celery_queue):
    result = ping.apply_async(args=[21], queue=celery_queue)
    payload = result.get(timeout=60)
    assert payload["value"] == 42
    assert payload["pid"] == celery_worker.pid  # solo pool: the task ran in the worker process


@pytest.mark.parametrize("library", ["learning", "encoders"])
def test_libraries_import_without_django(library):
    code = (
        f"import sys, pkgutil, importlib, {library}\n"
        f"for m in pkgutil.walk_packages({library}.__path__, '{library}.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('django', 'celery', 'labelapp', 'rest_framework')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pool_counts_take_unlabeled_as_the_rest_of_the_dataset(db):
    from django.db.models import Count

    from labelapp.models import PoolState
    from labelapp.selectors.datasets import dataset_pool_counts
    from tests.labelapp.factories import make_dataset

    dataset = make_dataset(n_cases=30, n_seed=3)
    cases = list(dataset.cases.filter(pool_state=PoolState.UNLABELED).order_by("row")[:4])
    for case, state in zip(
        cases, ["confirmed", "confirmed", "not_confirmed", "shown"], strict=True
    ):
        case.pool_state = state
        case.save(update_fields=["pool_state"])
    every_row = {state.value: 0 for state in PoolState}
    for state, n in dataset.cases.values_list("pool_state").annotate(n=Count("id")).order_by():
        every_row[state] = n
    counts = dataset_pool_counts(dataset)
    assert counts == every_row
    assert counts["U"] == 30 - 3 - 4 and counts["confirmed"] == 2


def test_dataset_page_says_while_case_scores_still_follow_a_new_model(expert_client, db):
    from labelapp.models import Dataset, ModelVersion
    from tests.labelapp.factories import make_dataset

    dataset = make_dataset(n_cases=10, n_seed=1)
    old = ModelVersion.objects.create(dataset=dataset, artifact_dir="/nowhere")
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir="/nowhere")
    url = reverse("dataset-detail", args=[dataset.name])
    Dataset.objects.filter(pk=dataset.pk).update(current_model=version, scores_model=old)
    page = expert_client.get(url).content.decode()
    assert f"loaded for model v{version.pk}" in page and f"show model v{old.pk}'s scores" in page
    Dataset.objects.filter(pk=dataset.pk).update(scores_model=version)
    assert "scores-updating" not in expert_client.get(url).content.decode()
