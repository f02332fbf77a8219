"""Chunked work of an iteration: embedding and scoring fan out to helper tasks, and the new
scores are swapped in for lists and filters in one transaction after the pointer flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelapp.celery import app as celery_app
from labelapp.models import Case, CaseScore, Dataset, Iteration, ModelVersion
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services import case_scores, pipeline
from labelapp.services.model_versions import case_scores_sync, case_scores_sync_pending
from labelapp.services.pipeline import iteration_execute
from tests.labelapp.loop_data import make_loop_dataset
from tests.labelapp.test_iterations import _queued


@pytest.fixture
def loop_settings(settings, tmp_path):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    settings.LOOP_SCORE_CHUNK_ROWS = 400
    settings.LOOP_EMBED_CHUNK_EVENTS = 300
    return settings


@pytest.fixture
def eager_tasks():
    """Helper tasks run where they are enqueued (the eager setup): each one before the caller
    goes on, so the helpers do every chunk they can claim."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def _db_scores(dataset: Dataset) -> np.ndarray:
    rows = (
        Case.objects.with_shown_scores(Dataset.objects.get(pk=dataset.pk))
        .filter(dataset=dataset)
        .order_by("row")
        .values_list("score", flat=True)
    )
    return np.array(rows, dtype=np.float64)


def _current_scores(dataset: Dataset) -> np.ndarray:
    dataset.refresh_from_db()
    return np.load(Path(dataset.current_model.artifact_dir) / "scores.npy")


def test_chunks_run_as_tasks_and_match_the_unchunked_result(
    transactional_db, tmp_path, loop_settings, eager_tasks
):
    from encoders.api import ChunkedEmbedding, embed_dataset
    from labelapp.services.imports import dataset_import
    from tests.labelapp.factories import make_dataset_dir

    folder = make_dataset_dir(tmp_path, n_cases=900, seed=2, name="chunked")
    dataset = dataset_import(name="chunked", source_dir=folder)
    iteration = _queued(dataset, use_embeddings=True, encoder_minutes=0.05)
    assert iteration_execute(iteration_id=iteration.pk)["status"] == "done", Iteration.objects.get(
        pk=iteration.pk
    ).error
    iteration.refresh_from_db()
    # Every embedding chunk and every score chunk but the first went to a helper task.
    assert "by helper tasks" in iteration.log and "helper task embedded" in iteration.log
    embed_line = next(line for line in iteration.log.splitlines() if "chunk(s): " in line)
    assert ": 0 here," in embed_line, embed_line
    assert "(400 here, 500 by helper tasks)" in iteration.log
    # The chunked embeddings are those of one process embedding everything in one go.
    encoders_dir = Path(loop_settings.ARTIFACTS_DIR) / "encoders" / str(dataset.pk)
    (encoder,) = encoders_dir.glob("encoder-*.pt")
    (chunked,) = encoders_dir.glob("embeddings-*.npy")
    job = ChunkedEmbedding(encoder, snapshot_dir_for(dataset), chunked, chunk_events=300)
    assert len(job.keys) > 2 and job.is_complete()
    whole = embed_dataset(encoder, snapshot_dir_for(dataset), tmp_path / "whole.npy")
    np.testing.assert_array_equal(np.load(chunked), np.asarray(whole))
    # The chunked scores are the model's scores of the whole matrix, and Case.score holds them.
    version = iteration.model_version
    scores = np.load(Path(version.artifact_dir) / "scores.npy")
    folder = Path(version.artifact_dir)
    (folder / "scores").mkdir()
    (folder / "inputs.json").write_text(
        f'{{"snapshot": "{snapshot_dir_for(dataset)}", "embeddings": "{chunked}"}}'
    )
    np.testing.assert_allclose(pipeline.score_chunk(folder, 0, len(scores)), scores, rtol=1e-6)
    np.testing.assert_allclose(_db_scores(dataset), scores, rtol=1e-6)
    dataset.refresh_from_db()
    assert dataset.scores_model == version and not dataset.case_scores_pending


def test_interrupted_chunked_scoring_never_becomes_current(
    transactional_db, tmp_path, loop_settings, monkeypatch
):
    dataset, _ = make_loop_dataset("interrupted", tmp_path / "snapshots", n_cases=1500)
    first = _queued(dataset)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done"
    v1_scores = _current_scores(dataset)
    v1 = dataset.current_model
    real_score_chunk = pipeline.score_chunk
    calls = []

    def dies_on_the_third_chunk(staging, start, stop, X=None):
        calls.append(start)
        if len(calls) == 3:
            raise MemoryError("worker killed while scoring")
        return real_score_chunk(staging, start, stop, X=X)

    monkeypatch.setattr(pipeline, "score_chunk", dies_on_the_third_chunk)
    second = _queued(dataset, random_state=7)
    assert iteration_execute(iteration_id=second.pk)["status"] == "failed"
    dataset.refresh_from_db()
    assert dataset.current_model == v1 and dataset.scores_model == v1
    assert ModelVersion.objects.filter(dataset=dataset).count() == 1
    assert not list(Path(v1.artifact_dir).parent.glob(".staging-*"))
    np.testing.assert_allclose(_db_scores(dataset), v1_scores, rtol=1e-6)


def test_case_scores_swap_in_all_at_once_and_a_failed_load_is_redone(
    transactional_db, tmp_path, loop_settings, monkeypatch
):
    dataset, _ = make_loop_dataset("resumed", tmp_path / "snapshots", n_cases=1500)
    first = _queued(dataset)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done"
    v1_scores = _current_scores(dataset)
    np.testing.assert_allclose(_db_scores(dataset), v1_scores, rtol=1e-6)
    real_load = case_scores._rows_load

    def dies_half_way(dataset_id, version_id, scores):
        real_load(dataset_id, version_id, scores[:700])
        raise ConnectionError("worker lost its database")

    monkeypatch.setattr(case_scores, "_rows_load", dies_half_way)
    second = _queued(dataset, random_state=7)
    assert iteration_execute(iteration_id=second.pk)["status"] == "done"
    first.refresh_from_db()
    second.refresh_from_db()
    dataset.refresh_from_db()
    # The version is complete and current; lists still show v1's scores, every one of them:
    # the half-loaded rows went with the failed transaction.
    assert (
        dataset.current_model == second.model_version
        and dataset.scores_model == first.model_version
    )
    assert dataset.case_scores_pending
    assert "showing the new scores failed, to be retried" in second.log
    np.testing.assert_allclose(_db_scores(dataset), v1_scores, rtol=1e-6)
    assert not CaseScore.objects.filter(version=second.model_version).exists()
    monkeypatch.setattr(case_scores, "_rows_load", real_load)
    assert case_scores_sync_pending() == 1  # the reaper task's repair
    v2_scores = _current_scores(dataset)
    np.testing.assert_allclose(_db_scores(dataset), v2_scores, rtol=1e-6)
    assert case_scores_sync_pending() == 0
    assert case_scores_sync(dataset=dataset) is True
    # v1's rows stay for a quick rollback; none older exist.
    kept = set(CaseScore.objects.values_list("version_id", flat=True).distinct())
    assert kept == {first.model_version_id, second.model_version_id}


def test_rollback_shows_the_earlier_scores_and_later_versions_prune_the_oldest(
    transactional_db, tmp_path, loop_settings
):
    from labelapp.services.model_versions import model_version_rollback

    dataset, _ = make_loop_dataset("rolled", tmp_path / "snapshots", n_cases=1500)
    versions = []
    for seed in (1, 2, 3):
        iteration = _queued(dataset, random_state=seed)
        assert iteration_execute(iteration_id=iteration.pk)["status"] == "done"
        iteration.refresh_from_db()
        versions.append(iteration.model_version)
    kept = set(CaseScore.objects.values_list("version_id", flat=True).distinct())
    assert kept == {versions[1].pk, versions[2].pk}
    dataset.refresh_from_db()
    model_version_rollback(dataset=dataset)
    dataset.refresh_from_db()
    assert dataset.current_model == versions[1] == dataset.scores_model
    np.testing.assert_allclose(_db_scores(dataset), _current_scores(dataset), rtol=1e-6)
    assert CaseScore.objects.filter(version=versions[1]).count() == dataset.n_cases


def test_a_score_chunk_task_run_twice_is_harmless(transactional_db, tmp_path, loop_settings):
    from labelapp.tasks.iterations import iteration_score_chunk

    dataset, _ = make_loop_dataset("twice", tmp_path / "snapshots", n_cases=1500)
    iteration = _queued(dataset)
    assert iteration_execute(iteration_id=iteration.pk)["status"] == "done"
    iteration.refresh_from_db()
    folder = Path(iteration.model_version.artifact_dir)
    # The helper delivered after the iteration ended does nothing.
    result = iteration_score_chunk(iteration.pk, str(folder), 400, 800)
    assert result["scored"] is False
    # A chunk scored twice writes the same file.
    (folder / "scores").mkdir()
    (folder / "inputs.json").write_text(f'{{"snapshot": "{snapshot_dir_for(dataset)}"}}')
    once = pipeline.score_chunk(folder, 400, 800)
    twice = pipeline.score_chunk(folder, 400, 800)
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_allclose(once, np.load(folder / "scores.npy")[400:800], rtol=1e-6)
    assert Iteration.objects.get(pk=iteration.pk).status == "done"
