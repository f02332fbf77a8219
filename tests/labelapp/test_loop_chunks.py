"""Chunked work of an iteration: embedding and scoring fan out to helper tasks, and the new
scores reach ``Case.score`` in short transactions after the pointer flips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labelapp.celery import app as celery_app
from labelapp.models import Case, Dataset, Iteration, ModelVersion
from labelapp.selectors.datasets import snapshot_dir_for
from labelapp.services import model_versions, pipeline
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
    settings.LOOP_SCORE_WRITE_ROWS = 500
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
    rows = Case.objects.filter(dataset=dataset).order_by("row").values_list("score", flat=True)
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
    assert dataset.scores_model == version and dataset.scores_synced_rows == dataset.n_cases


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


def test_case_scores_written_after_the_flip_resume_and_rerun_harmlessly(
    transactional_db, tmp_path, loop_settings, monkeypatch
):
    dataset, _ = make_loop_dataset("resumed", tmp_path / "snapshots", n_cases=1500)
    first = _queued(dataset)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done"
    real_write = model_versions._case_scores_write_rows
    chunks = []

    def dies_on_the_second_chunk(dataset_id, start, scores, percentiles):
        chunks.append(start)
        if len(chunks) == 2:
            raise ConnectionError("worker lost its database")
        real_write(dataset_id, start, scores, percentiles)

    monkeypatch.setattr(model_versions, "_case_scores_write_rows", dies_on_the_second_chunk)
    second = _queued(dataset, random_state=7)
    assert iteration_execute(iteration_id=second.pk)["status"] == "done"
    second.refresh_from_db()
    dataset.refresh_from_db()
    # The version is complete and current; only the copy into Case.score stopped after a chunk.
    assert dataset.current_model == second.model_version
    assert dataset.scores_model == second.model_version and dataset.scores_synced_rows == 500
    assert "writing Case.score failed, to be resumed" in second.log
    v2_scores = _current_scores(dataset)
    assert not np.allclose(_db_scores(dataset), v2_scores)
    np.testing.assert_allclose(_db_scores(dataset)[:500], v2_scores[:500], rtol=1e-6)
    monkeypatch.setattr(model_versions, "_case_scores_write_rows", real_write)
    assert case_scores_sync_pending() == 1  # the reaper task's repair
    np.testing.assert_allclose(_db_scores(dataset), v2_scores, rtol=1e-6)
    assert case_scores_sync_pending() == 0
    # Written again from the start: the same values.
    Dataset.objects.filter(pk=dataset.pk).update(scores_synced_rows=0)
    assert case_scores_sync(dataset=dataset) is True
    np.testing.assert_allclose(_db_scores(dataset), v2_scores, rtol=1e-6)


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
