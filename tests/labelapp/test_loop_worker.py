"""The loop end to end through real Celery workers (Redis + PostgreSQL where configured).

import -> launch -> done -> batch assigned -> experts answer -> the next iteration uses the
answers; a stage that raises and a worker killed mid-training both leave the previous model
current, a retry succeeds and no label is lost.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from labelapp.models import BatchItem, Case, Dataset, Iteration, Label, ModelVersion
from labelapp.services.imports import dataset_import
from labelapp.services.iterations import iteration_launch, iteration_retry
from labelapp.services.labels import label_create
from tests.labelapp.conftest import start_worker, stop_worker, wait_for
from tests.labelapp.factories import make_dataset_dir

pytestmark = pytest.mark.worker

N_CASES = 2500
FAST = {
    "batch_size": 30,
    "n_clusters": 3,
    "pool_size": 150,
    "n_estimators": 30,
    "use_embeddings": False,
}
WORKER_ENV = {
    "LOOP_THREADS": "1",
    "LOOP_WORKER_NICE": "0",
    "ITERATION_HEARTBEAT_STALE_S": "5",
}


@pytest.fixture(autouse=True)
def artifacts_dir(tmp_path, settings):
    """Snapshots and models of these tests, apart from the ones of the dev database."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.ARTIFACTS_DIR


def _worker(queue: str, pool: str = "solo") -> subprocess.Popen:
    from django.conf import settings

    from labelapp.tasks.system import ping

    env = {**WORKER_ENV, "ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR)}
    proc = start_worker(queue, pool=pool, extra_env=env)
    ping.apply_async(args=[1], queue=queue).get(timeout=90)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    stop_worker(proc, timeout=20)


@pytest.fixture
def loop_worker(transactional_db, celery_queue, artifacts_dir) -> Iterator[subprocess.Popen]:
    proc = _worker(celery_queue)
    yield proc
    _stop(proc)


@pytest.fixture
def imported(transactional_db, tmp_path):
    folder = make_dataset_dir(tmp_path, n_cases=N_CASES, seed=3, name="loopworker")
    return dataset_import(name="loopworker", source_dir=folder)


def _wait_ended(iteration: Iteration, timeout: float = 120) -> Iteration:
    def ended():
        iteration.refresh_from_db()
        if iteration.status == "done":  # and Case.score follows, after the pointer flip
            return "case scores " in iteration.log
        return iteration.status in ("failed", "cancelled")

    wait_for(ended, timeout=timeout, what=f"iteration {iteration.pk} to end")
    return iteration


def _truth(dataset) -> dict[int, int]:
    import pandas as pd

    from labelapp.selectors.datasets import snapshot_dir_for

    cases = pd.read_parquet(snapshot_dir_for(dataset) / "cases.parquet", columns=["row", "label"])
    return dict(zip(cases["row"], cases["label"], strict=True))


def _answer_batch(iteration: Iteration, expert, truth: dict[int, int]) -> dict[str, set[int]]:
    """A precision-first expert: confirms true positives, "not confirmed" for the rest."""
    answered: dict[str, set[int]] = {"confirmed": set(), "not_confirmed": set()}
    for item in iteration.batch.select_related("case"):
        answer = "confirmed" if truth[item.case.row] else "not_confirmed"
        label_create(user=expert, case=item.case, answer=answer, batch_item=item)
        answered[answer].add(item.case_id)
    return answered


def test_two_iterations_close_the_loop(loop_worker, imported, admin_user, expert_user):
    dataset = imported
    first = _wait_ended(iteration_launch(dataset=dataset, user=admin_user, params=FAST))
    assert first.status == "done", first.log
    dataset.refresh_from_db()
    v1 = first.model_version
    assert dataset.current_model == v1
    assert "stage score" in first.log and first.progress_done == first.progress_total
    assert not Case.objects.with_shown_scores(dataset).filter(score__isnull=True).exists()
    batch1 = list(first.batch.select_related("case"))
    assert len(batch1) == FAST["batch_size"]
    assert {item.case.pool_state for item in batch1} == {"shown"}
    assert all(item.status == "open" and item.assigned_to is None for item in batch1)

    answered = _answer_batch(first, expert_user, _truth(dataset))
    assert answered["confirmed"], "the first batch should confirm some positives"
    n_labels = Label.objects.count()

    second = _wait_ended(iteration_launch(dataset=dataset, user=admin_user, params=FAST))
    assert second.status == "done", second.log
    dataset.refresh_from_db()
    v2 = second.model_version
    assert dataset.current_model == v2 and v2.parent == v1
    # P grew by the confirmed cases, and the new model was trained with them.
    assert second.metrics["positives"] == first.metrics["positives"] + len(answered["confirmed"])
    assert v2.data_snapshot["labels_used"] == len(batch1)
    assert second.metrics["previous_batch"]["confirmed"] == len(answered["confirmed"])
    # Not-confirmed (and every other already shown) case is never offered again.
    batch2 = set(second.batch.values_list("case_id", flat=True))
    assert len(batch2) == FAST["batch_size"]
    assert not batch2 & answered["not_confirmed"]
    assert not batch2 & {item.case_id for item in batch1}
    assert Label.objects.count() == n_labels


def test_stage_that_raises_then_retry(loop_worker, imported, admin_user, expert_user):
    dataset = imported
    # The shell's way in: run_iteration --wait ends with one JSON line.
    out = io.StringIO()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    call_command("run_iteration", "--dataset", dataset.name, "--wait", *flags, stdout=out)
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["batch_size"] == FAST["batch_size"]
    first = Iteration.objects.get(pk=summary["iteration"])
    assert first.model_version_id == summary["model_version"] and summary["seconds"] > 0
    _answer_batch(first, expert_user, _truth(dataset))
    n_labels = Label.objects.count()
    states = dict(Case.objects.filter(dataset=dataset).values_list("id", "pool_state"))

    from labelapp.selectors.datasets import snapshot_dir_for

    snapshot = snapshot_dir_for(dataset) / "cases.parquet"
    original = snapshot.read_bytes()
    snapshot.write_bytes(b"not a parquet file" + original[:1000])  # a corrupt snapshot
    try:
        failed = _wait_ended(iteration_launch(dataset=dataset, user=admin_user, params=FAST))
    finally:
        snapshot.write_bytes(original)
    assert failed.status == "failed"
    assert failed.error and "Traceback" in failed.log and "stage load" in failed.log
    dataset.refresh_from_db()
    assert dataset.current_model == first.model_version
    assert ModelVersion.objects.filter(dataset=dataset).count() == 1
    assert not failed.batch.exists()
    assert dict(Case.objects.filter(dataset=dataset).values_list("id", "pool_state")) == states

    retry = _wait_ended(iteration_retry(iteration=failed, user=admin_user))
    assert retry.status == "done", retry.log
    assert retry.retry_of == failed and retry.params == failed.params
    dataset.refresh_from_db()
    assert dataset.current_model == retry.model_version
    assert retry.model_version.parent == first.model_version
    assert Label.objects.count() == n_labels


def test_worker_killed_mid_training(transactional_db, celery_queue, imported, admin_user):
    dataset = imported
    proc = _worker(celery_queue, pool="prefork")
    try:
        first = _wait_ended(iteration_launch(dataset=dataset, user=admin_user, params=FAST))
        assert first.status == "done", first.log
        # Many trees and EM rounds: training lasts long enough to be killed in the middle of it.
        slow = {**FAST, "n_estimators": 600, "em_rounds": 3, "random_state": 1}
        doomed = iteration_launch(dataset=dataset, user=admin_user, params=slow)

        def training():
            doomed.refresh_from_db()
            assert doomed.status in ("queued", "running"), doomed.log
            return doomed.stage == "train"

        wait_for(training, timeout=90, interval=0.05, what="the train stage")
        child = int(re.search(r"started on \S+ pid (\d+)", doomed.log).group(1))
        assert child != proc.pid  # the pool's child process, not the worker's main process
        os.kill(child, signal.SIGKILL)

        doomed = _wait_ended(doomed, timeout=90)
        assert doomed.status == "failed"
        assert "worker lost" in doomed.error
        dataset.refresh_from_db()
        assert dataset.current_model == first.model_version
        assert ModelVersion.objects.filter(dataset=dataset).count() == 1
        assert not BatchItem.objects.filter(iteration=doomed).exists()

        retry = _wait_ended(iteration_retry(iteration=doomed, user=admin_user), timeout=180)
        assert retry.status == "done", retry.log
        dataset.refresh_from_db()
        assert dataset.current_model == retry.model_version
    finally:
        _stop(proc)


def test_dead_workers_iteration_is_failed_by_beat_with_nobody_looking(
    transactional_db, celery_queue, imported, admin_user, tmp_path
):
    """The whole worker process dies mid-training; nobody opens a page or calls the API. The
    reaper, sent by celery beat to another worker, fails the iteration within 60 s (default
    heartbeat and reaper settings) and removes the attempt's staging folder."""
    import time

    from labelapp.services.model_versions import models_root

    dataset = imported
    # The beat worker consumes its own queue: it can never pick up (or be handed again) the
    # iteration itself, so only the scheduled reaper can end it.
    beat_queue = f"{celery_queue}-beat"
    reaper = start_worker(
        beat_queue,
        extra_env={"LOOP_THREADS": "1", "ARTIFACTS_DIR": str(django_settings.ARTIFACTS_DIR)},
        beat_schedule=tmp_path / "beat-schedule",
    )
    doomed_worker = _worker(celery_queue)  # solo pool: the iteration runs in this very process
    try:
        slow = {**FAST, "n_estimators": 600, "em_rounds": 3, "random_state": 1}
        doomed = iteration_launch(dataset=dataset, user=admin_user, params=slow)

        def training():
            doomed.refresh_from_db()
            assert doomed.status in ("queued", "running"), doomed.log
            return doomed.stage == "train"

        wait_for(training, timeout=90, interval=0.05, what="the train stage")
        assert list(models_root(dataset).glob(f".staging-{doomed.pk}-*"))
        os.kill(doomed_worker.pid, signal.SIGKILL)
        doomed_worker.wait()
        killed_at = time.monotonic()

        def failed():
            doomed.refresh_from_db(fields=["status", "error"])
            return doomed.status == "failed"

        wait_for(failed, timeout=60, interval=0.5, what="the reaper to fail the iteration")
        assert time.monotonic() - killed_at < 60
        assert doomed.error.startswith("worker lost: no heartbeat since")
        assert not list(models_root(dataset).glob(".staging-*"))
    finally:
        if doomed_worker.poll() is None:
            _stop(doomed_worker)
        _stop(reaper)


@pytest.mark.skipif(
    not django_settings.CELERY_BROKER_URL.startswith("redis"),
    reason="needs the Redis broker (CI's): the filesystem broker polls once a second, so on a "
    "dataset this small the helpers arrive after the iteration has embedded every chunk itself "
    "(test_loop_chunks.py covers the fan-out without a broker)",
)
def test_two_workers_share_the_embedding_and_scoring_chunks(
    transactional_db, celery_queue, artifacts_dir, imported, admin_user
):
    """Helper tasks reach the second worker while the first runs the iteration; the result is
    the same as one process embedding everything."""
    import numpy as np

    from encoders.api import embed_dataset
    from labelapp.selectors.datasets import snapshot_dir_for

    env = {**WORKER_ENV, "LOOP_EMBED_CHUNK_EVENTS": "400", "LOOP_SCORE_CHUNK_ROWS": "300"}
    workers = []
    try:
        for _ in range(2):
            workers.append(start_worker(celery_queue, extra_env=env))
        params = {**FAST, "use_embeddings": True, "encoder_minutes": 0.05}
        iteration = iteration_launch(dataset=imported, user=admin_user, params=params)
        iteration = _wait_ended(iteration, timeout=300)

        def log_has_helpers_and_scores() -> bool:
            iteration.refresh_from_db()
            return "helper task embedded" in iteration.log and "case scores shown" in iteration.log

        wait_for(log_has_helpers_and_scores, timeout=60, what="helper and Case.score log lines")
    finally:
        for proc in workers:
            _stop(proc)
    assert iteration.status == "done", iteration.log
    assert re.search(r"embedded \d+ chunk\(s\): \d+ here, \d+ by helper tasks", iteration.log)
    folder = artifacts_dir / "encoders" / str(imported.pk)
    (encoder,) = folder.glob("encoder-*.pt")
    (chunked,) = folder.glob("embeddings-*.npy")
    whole = embed_dataset(encoder, snapshot_dir_for(imported), artifacts_dir / "whole.npy")
    np.testing.assert_array_equal(np.load(chunked), np.asarray(whole))
    version = iteration.model_version
    scores = np.load(f"{version.artifact_dir}/scores.npy")
    shown = Case.objects.with_shown_scores(Dataset.objects.get(pk=imported.pk))
    db = shown.filter(dataset=imported).order_by("row").values_list("score", flat=True)
    np.testing.assert_allclose(np.array(db, dtype=float), scores, rtol=1e-6)
