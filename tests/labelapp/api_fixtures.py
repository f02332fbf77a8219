"""Fixtures of the API tests: token clients per persona and a small world with a trained model.

Import into a test module with ``from tests.labelapp.api_fixtures import *  # noqa: F403``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.labelapp.factories import make_batch, make_dataset, make_iteration
from tests.labelapp.model_factories import make_model_version, train_artifacts

__all__ = [
    "PERSONAS",
    "api_client_for",
    "clear_throttles",
    "fast_password_hashing",
    "trained_artifacts",
    "world",
]

PERSONAS = ("admin", "expert", "outsider", "anonymous")


def api_client_for(user) -> APIClient:
    """A client that authenticates with the user's API token (no session, no CSRF)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Personas are made per test; the real hasher costs a second per user on a busy machine."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def clear_throttles():
    """Throttle counters live in the cache; every test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory, django_db_setup, django_db_blocker) -> Path:
    """One model trained on the toy dataset, reused (read only) by every test's model version."""
    from django.db import transaction

    folder = tmp_path_factory.mktemp("model") / "v"
    with django_db_blocker.unblock(), transaction.atomic():
        dataset = make_dataset(name="toy-training", n_cases=40, n_seed=6)
        train_artifacts(dataset, folder)
        transaction.set_rollback(True)
    return folder


class World:
    """Who and what a permission test needs; attributes are set by the ``world`` fixture."""

    def client(self, persona: str) -> APIClient:
        return api_client_for(self.users[persona])


@pytest.fixture
def world(
    db, settings, tmp_path, admin_user, expert_user, outsider_user, trained_artifacts
) -> World:
    """A dataset of 40 cases with a current model, a batch of 4 and the expert holding one case.

    ``visible_case`` is leased to the expert, ``labeled_case`` holds the expert's answer
    (``expert_label``), ``hidden_case`` is outside the expert's queue.
    """
    from labelapp.services.labels import label_create
    from labelapp.services.uploads import upload_save

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.UPLOADS_DIR = tmp_path / "uploads"
    w = World()
    w.users = {
        "admin": admin_user,
        "expert": expert_user,
        "outsider": outsider_user,
        "anonymous": None,
    }
    w.dataset = make_dataset(name="toy", n_cases=40, n_seed=6)
    w.model_version = make_model_version(w.dataset, trained_artifacts, train=False)
    w.batch = make_batch(w.dataset, size=4)
    leased = w.batch[0]
    leased.assigned_to = expert_user
    leased.lease_expires_at = timezone.now() + timedelta(minutes=15)
    leased.save()
    w.visible_case = leased.case
    w.labeled_case = w.batch[1].case
    w.expert_label = label_create(user=expert_user, case=w.labeled_case, answer="confirmed")
    w.hidden_case = w.batch[2].case
    w.iteration = w.batch[0].iteration
    w.failed = make_iteration(w.dataset, status="failed")
    w.other_dataset = make_dataset(name="toy2", n_cases=5, n_seed=1)
    w.running = make_iteration(w.other_dataset, status="running")
    w.upload_id, _ = upload_save(files={})
    return w
