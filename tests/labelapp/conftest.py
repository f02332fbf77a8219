"""Fixtures for the app: personas (admin, expert, outsider) and a real Celery worker process."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelapp.celery import app as celery_app
from labelapp.services.users import user_create_with_role
from labelapp.workers import worker_command, worker_environment

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def isolated_files_and_fast_passwords(settings, tmp_path_factory):
    """Every test writes artifacts and uploads under its own temporary folder (never into the
    dev database's ``var/artifacts``), and hashes passwords cheaply (test users only)."""
    root = tmp_path_factory.mktemp("files")
    settings.ARTIFACTS_DIR = root / "artifacts"
    settings.UPLOADS_DIR = root / "uploads"
    settings.ARTIFACTS_DIR.mkdir()
    settings.UPLOADS_DIR.mkdir()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_user(db):
    return user_create_with_role(username="alice-admin", password=PASSWORD, role="admin")


@pytest.fixture
def expert_user(db):
    return user_create_with_role(username="eve-expert", password=PASSWORD, role="expert")


@pytest.fixture
def second_expert(db):
    return user_create_with_role(username="bob-expert", password=PASSWORD, role="expert")


@pytest.fixture
def outsider_user(db):
    return user_create_with_role(username="olga-outsider", password=PASSWORD, role=None)


def _client_for(client_class, user):
    c = client_class()
    c.force_login(user)
    return c


@pytest.fixture
def admin_client(admin_user, client):
    client.force_login(admin_user)
    return client


@pytest.fixture
def expert_client(expert_user):
    from django.test import Client

    return _client_for(Client, expert_user)


@pytest.fixture
def outsider_client(outsider_user):
    from django.test import Client

    return _client_for(Client, outsider_user)


def start_worker(
    queue: str,
    *,
    pool: str = "solo",
    extra_env: dict[str, str] | None = None,
    beat_schedule: Path | None = None,
):
    """A real worker process on ``queue`` (its tasks' default queue too); with
    ``beat_schedule``, celery beat runs inside it (``-B``) with its state in that file."""
    # The worker sees the same database and files as the test that started it.
    # The map of the cases (a UMAP per version) only where a test asks for it: CPU is scarce.
    env = worker_environment(queue, **{"CASE_MAP_AFTER_ITERATION": "0", **(extra_env or {})})
    # One log per process: two workers on one queue must not write over each other's file.
    log = open(REPO_ROOT / "var" / f"worker-{queue}-{uuid.uuid4().hex[:6]}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        worker_command(queue, pool=pool, beat_schedule=beat_schedule),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc


def stop_worker(proc: subprocess.Popen, *, timeout: float = 20.0) -> None:
    """Warm shutdown, then kill; returns once the process (and its DB connection) is gone."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def celery_queue(settings) -> Iterator[str]:
    """A queue name of this test alone, so leftovers of other runs never reach our worker."""
    queue = f"test-{uuid.uuid4().hex[:10]}"
    old = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    yield queue
    celery_app.conf.task_default_queue = old


@pytest.fixture
def celery_worker(transactional_db, celery_queue) -> Iterator[subprocess.Popen]:
    """A real, separate Celery worker process on the configured broker and the test database."""
    from labelapp.tasks.system import ping

    proc = start_worker(celery_queue)
    try:
        result = ping.apply_async(args=[1], queue=celery_queue)
        result.get(timeout=60)
        yield proc
    finally:
        stop_worker(proc, timeout=15)


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
