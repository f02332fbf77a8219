"""Workers' beacons: the shell and the pages say when no worker consumes the queue; the reaper's
housekeeping removes what killed runs leave behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labelapp.models import Dataset, Iteration
from labelapp.services.iterations import iteration_fail
from labelapp.tasks.iterations import iteration_reap_stale_task
from labelapp.workers import (
    BEACON_STALE_S,
    NO_WORKER_GRACE_S,
    WorkerBeacon,
    live_workers,
    no_worker_message,
)
from tests.labelapp.conftest import stop_worker, wait_for
from tests.labelapp.factories import make_dataset, make_iteration

DAY = 24 * 3600


def test_run_iteration_without_a_worker_fails_within_a_minute(
    transactional_db, celery_queue, settings
):
    """No worker on the queue: say so at once, give up well inside a minute, fail the iteration
    (a retry or a new launch is not blocked by it)."""
    dataset = make_dataset(name="lonely", n_cases=20)
    assert live_workers(queue=celery_queue) == []
    started = time.monotonic()
    with pytest.raises(CommandError) as err:
        # --timeout: before the fix the command waited this long (6 hours by default) in silence.
        call_command("run_iteration", "--dataset", dataset.name, "--wait", "--timeout", "75")
    elapsed = time.monotonic() - started
    assert elapsed < 60
    assert "make worker" in str(err.value) and repr(celery_queue) in str(err.value)
    iteration = Iteration.objects.get(dataset=dataset)
    assert iteration.status == "failed" and "make worker" in iteration.error
    assert NO_WORKER_GRACE_S + 5 < 60


def test_pages_say_that_no_worker_consumes_the_queue(transactional_db, celery_queue, admin_client):
    dataset = make_dataset(name="waiting", n_cases=20)
    queued = make_iteration(dataset, status=Iteration.Status.QUEUED)
    page = reverse("iteration-detail", args=[dataset.name, queued.number])
    detail = admin_client.get(page).content.decode()
    progress = admin_client.get(reverse("iteration-progress", args=[queued.pk])).content.decode()
    launch = admin_client.get(reverse("iteration-launch", args=[dataset.name])).content.decode()
    for html in (detail, progress, launch):
        assert 'id="no-worker"' in html and "make worker" in html

    # A worker on another queue does not count; one on this queue does.
    WorkerBeacon("other@host", ["elsewhere"]).write()
    assert "make worker" in no_worker_message()
    beacon = WorkerBeacon("w@host", [celery_queue])
    beacon.write()
    detail = admin_client.get(page).content.decode()
    assert 'id="no-worker"' not in detail
    # ... until its beacon is older than the stale limit (a killed worker).
    old = time.time() - BEACON_STALE_S - 1
    os.utime(beacon.path, (old, old))
    assert live_workers(queue=celery_queue, now=time.time() + BEACON_STALE_S + 1) == []


def test_a_real_worker_beats_while_up_and_removes_its_beacon_on_stop(
    transactional_db, celery_queue, settings
):
    from tests.labelapp.conftest import start_worker

    proc = start_worker(celery_queue)
    try:
        found = wait_for(
            lambda: live_workers(queue=celery_queue), timeout=90, what="the worker's beacon"
        )
        assert found[0]["pid"] == proc.pid and found[0]["queues"] == [celery_queue]
        assert no_worker_message() is None
    finally:
        stop_worker(proc)
    assert live_workers(queue=celery_queue) == []
    assert not list((Path(settings.ARTIFACTS_DIR) / "workers").glob("*.json"))


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (then, then))


def test_reaper_removes_leftovers_older_than_a_day(transactional_db, settings):
    dataset = make_dataset(name="leftovers", n_cases=10)
    running = make_iteration(dataset, status=Iteration.Status.RUNNING)
    Iteration.objects.filter(pk=running.pk).update(heartbeat_at=None, started_at=None)
    models = Path(settings.ARTIFACTS_DIR) / "models" / str(dataset.pk)
    old_dead = models / ".staging-999-deadbeef"
    young_dead = models / ".staging-998-deadbeef"
    old_running = models / f".staging-{running.pk}-cafe0001"
    published = models / "1-cafe0002"
    for folder in (old_dead, young_dead, old_running, published):
        folder.mkdir(parents=True)
        (folder / "model.txt").write_text("trees")
    for folder in (old_dead, old_running, published):
        _age(folder, 2 * DAY)
    uploads = Path(settings.UPLOADS_DIR)
    old_upload, young_upload = uploads / "a", uploads / "b"
    for folder in (old_upload, young_upload):
        folder.mkdir()
        (folder / "status.json").write_text('{"state": "rejected"}')
    _age(old_upload, 2 * DAY)

    result = iteration_reap_stale_task()  # what celery beat runs on its schedule

    assert not old_dead.exists() and young_dead.exists()
    assert old_running.exists(), "an active iteration's staging folder is never removed"
    assert published.exists()
    assert not old_upload.exists() and young_upload.exists()
    assert result["removed"]["staging"] == 1 and result["removed"]["uploads"] == 1


def test_a_failed_iteration_removes_its_staging_folders(transactional_db, settings):
    dataset = make_dataset(name="failing", n_cases=10)
    running = make_iteration(dataset, status=Iteration.Status.RUNNING)
    models = Path(settings.ARTIFACTS_DIR) / "models" / str(dataset.pk)
    mine = models / f".staging-{running.pk}-0123abcd"
    other = models / f".staging-{running.pk + 1}-0123abcd"
    for folder in (mine, other):
        folder.mkdir(parents=True)
    assert iteration_fail(iteration_id=running.pk, error="worker lost")
    assert not mine.exists() and other.exists()
    assert Dataset.objects.filter(pk=dataset.pk).exists()
