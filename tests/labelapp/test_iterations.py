"""The loop's services and pages, run in-process (the real-worker runs are in test_loop_worker)."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from django.urls import reverse

from labelapp.models import AuditEvent, BatchItem, Case, Dataset, Iteration, ModelVersion
from labelapp.services.iterations import (
    IterationAlreadyActive,
    IterationParamsError,
    iteration_cancel,
    iteration_launch,
    iteration_params_clean,
    iteration_reap_stale,
)
from labelapp.services.model_versions import model_version_promote, model_version_rollback
from labelapp.services.pipeline import chunk_plan, iteration_execute, score_chunk
from learning.featurespec import FeatureSpec, build_matrix
from learning.knn_feature import KNN_FEATURE, knn_index, knn_positive_share, knn_space
from tests.labelapp.loop_data import make_loop_dataset

FAST = {"batch_size": 20, "n_clusters": 4, "pool_size": 100, "n_estimators": 30}


@pytest.fixture
def loop_dataset(transactional_db, tmp_path, settings):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"  # models apart from the dev database's
    settings.LOOP_THREADS = 1  # a shared 2-core machine: OpenMP spinning costs minutes
    settings.LOOP_WORKER_NICE = 0  # the pipeline runs in the test process here
    return make_loop_dataset("loopdata", tmp_path / "snapshots", n_cases=1500)


def _queued(dataset, user=None, **params) -> Iteration:
    """A queued iteration without enqueueing (these tests run the pipeline in-process)."""
    number = dataset.iterations.count() + 1
    return Iteration.objects.create(
        dataset=dataset,
        number=number,
        params=iteration_params_clean({**FAST, **params}, dataset=dataset),
        launched_by=user,
    )


def test_params_defaults_and_validation(db):
    params = iteration_params_clean({})
    assert params["batch_size"] == 100 and params["spy_quantile"] == 0.1
    assert iteration_params_clean({"batch_size": "30", "use_embeddings": "off"})["batch_size"] == 30
    with pytest.raises(IterationParamsError) as err:
        iteration_params_clean(
            {"batch_size": 0, "spy_fraction": 0.9, "em_rounds": "two", "colour": "red"}
        )
    assert set(err.value.errors) == {"batch_size", "spy_fraction", "em_rounds", "colour"}
    with pytest.raises(IterationParamsError, match="n_clusters"):
        iteration_params_clean({"batch_size": 5, "n_clusters": 10})


def test_second_launch_is_refused_with_a_clear_message(loop_dataset, admin_user):
    dataset, _ = loop_dataset
    first = iteration_launch(dataset=dataset, user=admin_user, params=FAST)
    with pytest.raises(IterationAlreadyActive, match="already queued or running"):
        iteration_launch(dataset=dataset, user=admin_user, params=FAST)
    assert AuditEvent.objects.filter(verb="iteration.launch").count() == 1
    assert iteration_cancel(iteration=first, user=admin_user)
    assert first.status == "cancelled"
    iteration_launch(dataset=dataset, user=admin_user, params=FAST)  # allowed again


def test_embeddings_refused_for_a_dataset_without_events(loop_dataset, admin_user):
    dataset, _ = loop_dataset
    with pytest.raises(IterationParamsError, match="no events"):
        iteration_launch(dataset=dataset, user=admin_user, params={"use_embeddings": True})


def test_pipeline_in_process_writes_model_scores_and_batch(loop_dataset, admin_user):
    dataset, cases = loop_dataset
    iteration = _queued(dataset, admin_user)
    result = iteration_execute(iteration_id=iteration.pk)
    assert result["status"] == "done", Iteration.objects.get(pk=iteration.pk).log
    iteration.refresh_from_db()
    dataset.refresh_from_db()
    version = iteration.model_version
    assert dataset.current_model == version and version.parent is None
    folder = Path(version.artifact_dir)
    for name in ("model.txt", "feature_spec.json", "positives.parquet", "scores.npy"):
        assert (folder / name).exists(), name
    assert not list(folder.parent.glob(".staging-*"))
    # Scores in the database are the model's scores, ranked into percentiles.
    scores = np.load(folder / "scores.npy")
    db_scores = np.array(
        Case.objects.with_shown_scores(Dataset.objects.get(pk=dataset.pk))
        .filter(dataset=dataset)
        .order_by("row")
        .values_list("score", flat=True)
    )
    np.testing.assert_allclose(db_scores, scores, rtol=1e-6)
    top = Case.objects.with_shown_scores(dataset).filter(dataset=dataset).order_by("-score").first()
    assert top.score_percentile == pytest.approx(100.0)
    # The model ranks the known positives (the seed rule's pattern) at the top.
    seeds = cases["seed_positive"].to_numpy() == 1
    assert np.median(scores[seeds]) > np.quantile(scores[~seeds], 0.95)
    # The batch: offerable cases only, now shown, spread over clusters.
    items = BatchItem.objects.filter(iteration=iteration).select_related("case")
    assert items.count() == FAST["batch_size"]
    assert all(item.case.pool_state == "shown" and not item.case.seed_positive for item in items)
    assert len({item.cluster for item in items}) >= 2
    m = iteration.metrics
    assert m["positives"] == int(cases.seed_positive.sum())
    assert m["reliable_negatives"] > 0 and 0 < m["spy_threshold"] < 1
    assert sum(m["score_histogram"]["counts"]) == len(cases)
    assert set(m["stage_seconds"]) >= {"load", "features", "train", "score", "select"}
    assert AuditEvent.objects.filter(verb="model.current", target_id=str(version.pk)).exists()


def test_stage_that_raises_fails_and_keeps_the_previous_model(loop_dataset):
    dataset, _ = loop_dataset
    first = _queued(dataset)
    iteration_execute(iteration_id=first.pk)
    dataset.refresh_from_db()
    v1 = dataset.current_model
    shown_before = Case.objects.filter(dataset=dataset, pool_state="shown").count()
    bad = _queued(dataset, spy_fraction=0.5)
    # A LightGBM parameter it refuses makes the train stage raise.
    Iteration.objects.filter(pk=bad.pk).update(params={**bad.params, "n_estimators": -3})
    result = iteration_execute(iteration_id=bad.pk)
    bad.refresh_from_db()
    dataset.refresh_from_db()
    assert result["status"] == "failed" and bad.status == "failed"
    assert bad.error and "Traceback" in bad.log
    assert dataset.current_model == v1
    assert ModelVersion.objects.filter(dataset=dataset).count() == 1
    assert Case.objects.filter(dataset=dataset, pool_state="shown").count() == shown_before
    assert not list(Path(v1.artifact_dir).parent.glob(".staging-*"))
    # Safe to run twice: the task delivered again for a finished iteration does nothing.
    assert iteration_execute(iteration_id=bad.pk)["status"] == "failed"


def test_stale_heartbeat_is_reaped(loop_dataset):
    dataset, _ = loop_dataset
    iteration = _queued(dataset)
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running", started_at=pd.Timestamp("2020-01-01", tz="UTC"), stage="train"
    )
    assert iteration_reap_stale(dataset=dataset) == 1
    iteration.refresh_from_db()
    assert iteration.status == "failed" and "worker lost" in iteration.error


def test_chunked_scoring_rebuilds_features_like_the_standalone_scorer(loop_dataset):
    dataset, cases = loop_dataset
    iteration = _queued(dataset)
    iteration_execute(iteration_id=iteration.pk)
    folder = Path(Iteration.objects.get(pk=iteration.pk).model_version.artifact_dir)
    expected = np.load(folder / "scores.npy")
    # A helper worker scores a chunk from the snapshot and the stored spec and positives alone.
    (folder / "scores").mkdir()
    inputs = {"snapshot": dataset.snapshot_dir, "embeddings": None}
    (folder / "inputs.json").write_text(json.dumps(inputs))
    parts = [score_chunk(folder, a, b) for a, b in chunk_plan(len(cases), 700)]
    np.testing.assert_allclose(np.concatenate(parts), expected, rtol=1e-6)
    # And build_matrix over the raw file gives the same matrix for the same rows.
    spec = FeatureSpec.load(folder / "feature_spec.json")
    positives = pd.read_parquet(folder / "positives.parquet")
    X = build_matrix(spec, cases.iloc[:10], positives=positives)
    assert X.shape == (10, len(spec.feature_names))


def test_promote_and_rollback_rewrite_scores_and_audit(loop_dataset, admin_user):
    dataset, _ = loop_dataset
    for params in ({}, {"n_estimators": 60, "random_state": 3}):
        it = _queued(dataset, **params)
        iteration_execute(iteration_id=it.pk)
    dataset.refresh_from_db()
    v2 = dataset.current_model
    v1 = v2.parent
    assert v1 is not None
    model_version_rollback(dataset=dataset, user=admin_user)
    dataset.refresh_from_db()
    assert dataset.current_model == v1
    first = Case.objects.get(dataset=dataset, row=0)
    assert first.score == pytest.approx(float(np.load(Path(v1.artifact_dir) / "scores.npy")[0]))
    model_version_promote(version=v2, user=admin_user)
    dataset.refresh_from_db()
    assert dataset.current_model == v2
    verbs = list(AuditEvent.objects.filter(dataset=dataset).values_list("verb", flat=True))
    assert "model.rollback" in verbs and "model.promote" in verbs


# -- pages ---------------------------------------------------------------------------------------
def test_launch_page_permissions_and_validation(loop_dataset, admin_client, expert_client):
    dataset, _ = loop_dataset
    url = reverse("iteration-launch", args=[dataset.name])
    assert expert_client.get(url).status_code == 403
    page = admin_client.get(url)
    assert page.status_code == 200 and b"spy_quantile" in page.content
    bad = admin_client.post(url, {**FAST, "batch_size": 0, "use_embeddings": ""})
    assert bad.status_code == 200 and b"must be at least" in bad.content
    assert not Iteration.objects.exists()
    ok = admin_client.post(url, {**FAST})
    assert ok.status_code == 302
    again = admin_client.post(url, {**FAST}, follow=True)
    assert b"already queued or running" in again.content


def test_iteration_pages_show_progress_metrics_and_history(
    loop_dataset, admin_client, expert_client, outsider_client
):
    dataset, _ = loop_dataset
    iteration = _queued(dataset)
    iteration_execute(iteration_id=iteration.pk)
    page = reverse("iteration-detail", args=[dataset.name, iteration.number])
    assert outsider_client.get(page).status_code == 403
    response = expert_client.get(page)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Spy threshold" in body and "<svg" in body and "Reliable negatives" in body
    # The batch's reasons name the threshold the page shows as the selection threshold.
    iteration.refresh_from_db()
    threshold = iteration.metrics["selection_threshold"]
    assert 'id="selection-threshold"' in body and f"{threshold:.3g}" in body
    # The uncertain part (the top-score part is cluster -1, the random part -2).
    reasons = list(iteration.batch.filter(cluster__gte=0).values_list("reason", flat=True))
    shown = f"{threshold:.4f}" if threshold >= 0.001 else f"{threshold:.2e}"
    assert reasons and all(f"selection threshold {shown}" in r for r in reasons)
    assert "cluster -1" not in body
    fragment = expert_client.get(reverse("iteration-progress", args=[iteration.pk]))
    assert fragment.status_code == 200 and b"done" in fragment.content
    listing = expert_client.get(reverse("iteration-list", args=[dataset.name]))
    assert listing.status_code == 200 and b"<svg" in listing.content
    assert expert_client.post(reverse("iteration-cancel", args=[iteration.pk])).status_code == 403


def test_model_pages_compare_promote_rollback(loop_dataset, admin_client, expert_client):
    dataset, _ = loop_dataset
    for params in ({}, {"n_estimators": 60}):
        iteration_execute(iteration_id=_queued(dataset, **params).pk)
        # With one version there is nothing to roll back to: no button.
        listing = admin_client.get(reverse("model-list", args=[dataset.name])).content.decode()
        assert ('id="rollback"' in listing) == (dataset.model_versions.count() > 1)
    dataset.refresh_from_db()
    v2 = dataset.current_model
    v1 = v2.parent
    listing = expert_client.get(reverse("model-list", args=[dataset.name]))
    assert listing.status_code == 200 and b"current" in listing.content
    detail = expert_client.get(reverse("model-detail", args=[v2.pk]))
    assert detail.status_code == 200 and b"Lineage" in detail.content
    compare_url = reverse("model-compare", args=[dataset.name])
    compare = expert_client.get(compare_url, {"a": v1.pk, "b": v2.pk})
    assert compare.status_code == 200 and b"n_estimators" in compare.content
    assert expert_client.post(reverse("model-promote", args=[v1.pk])).status_code == 403
    assert admin_client.post(reverse("model-rollback", args=[dataset.name])).status_code == 302
    dataset.refresh_from_db()
    assert dataset.current_model == v1
    assert admin_client.post(reverse("model-promote", args=[v2.pk])).status_code == 302
    dataset.refresh_from_db()
    assert dataset.current_model == v2


def test_embeddings_pretrain_once_then_reused(transactional_db, tmp_path, settings):
    """A dataset with events: the first run pretrains an encoder, the next one reuses it."""
    from labelapp.services.imports import dataset_import
    from tests.labelapp.factories import make_dataset_dir

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    folder = make_dataset_dir(tmp_path, n_cases=600, seed=1, name="withevents")
    dataset = dataset_import(name="withevents", source_dir=folder)
    params = {**FAST, "use_embeddings": True, "encoder_minutes": 0.05}
    first = _queued(dataset, **params)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done", first.log
    first.refresh_from_db()
    assert "stage pretrain" in first.log and "stage embed" in first.log
    version = first.model_version
    spec = FeatureSpec.load(Path(version.artifact_dir) / "feature_spec.json")
    assert spec.embedding_dim > 0 and spec.sequence_length
    assert (Path(version.artifact_dir) / "encoder.pt").exists()
    # The default embedding_columns "own_event": the model takes the encoder's own-event
    # columns (the vector's last ones), the artifacts keep the whole vector.
    from encoders.checkpoint import load_raw, own_event_columns

    n_own = own_event_columns(load_raw(Path(version.artifact_dir) / "encoder.pt")["config"])
    assert 0 < n_own < spec.embedding_dim
    first_own = spec.embedding_dim - n_own
    assert spec.used_embedding_columns == list(range(first_own, spec.embedding_dim))
    assert sum(name.startswith("emb_") for name in version.feature_names) == n_own

    second = _queued(dataset, **params)
    assert iteration_execute(iteration_id=second.pk)["status"] == "done"
    second.refresh_from_db()
    assert "stage pretrain" not in second.log and "reusing encoder" in second.log


def test_auto_embeddings_decide_and_the_version_records_it(
    transactional_db, tmp_path, settings, admin_client
):
    """The default ``auto`` on a dataset with events. With no encoder yet the iteration does not
    wait: it goes on without embeddings and asks a worker to pretrain one (once). With the encoder
    there, it embeds, checks, logs the decision with its figures, and the version's spec and
    artifacts follow it."""
    from labelapp.services.encoder_pretraining import encoder_place, encoder_pretrain_request
    from labelapp.services.imports import dataset_import
    from labelapp.tasks.encoders import encoder_pretrain_task
    from tests.labelapp.factories import make_dataset_dir

    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    folder = make_dataset_dir(tmp_path, n_cases=600, seed=2, name="autoemb")
    dataset = dataset_import(name="autoemb", source_dir=folder)
    params = {**FAST, "encoder_minutes": 0.05}
    assert iteration_params_clean({}, dataset=dataset)["use_embeddings"] == "auto"

    first = _queued(dataset, **params)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done", first.log
    first.refresh_from_db()
    assert "stage pretrain" not in first.log and "stage embed" not in first.log
    assert "a worker pretrains one in the background" in first.log
    assert first.model_version.metrics["embeddings"] == {
        "setting": "auto",
        "used": False,
        "encoder": "pretraining",
    }
    snapshot = Path(first.model_version.data_snapshot["snapshot_dir"])
    place = encoder_place(dataset.pk, snapshot)
    assert place.claim.exists() and not place.encoder.exists()
    assert not encoder_pretrain_request(place, snapshot, minutes=0.05)  # one at a time
    # what the worker that took the message does
    done = encoder_pretrain_task(str(place.folder), place.key, str(snapshot), 0.05)
    assert done["pretrained"] and place.encoder.exists() and not place.claim.exists()

    second = _queued(dataset, **params)
    assert iteration_execute(iteration_id=second.pk)["status"] == "done", second.log
    second.refresh_from_db()
    assert "reusing encoder" in second.log and "held-out ROC AUC on" in second.log
    version = second.model_version
    decision = version.metrics["embeddings"]
    assert decision["setting"] == "auto" and decision["check"]["use"] == decision["used"]
    spec = FeatureSpec.load(Path(version.artifact_dir) / "feature_spec.json")
    assert (spec.embedding_dim > 0) == decision["used"]
    assert (Path(version.artifact_dir) / "encoder.pt").exists() == decision["used"]
    page = admin_client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert "Embeddings (auto)" in page and "held-out ROC AUC on" in page
    assert 0 < decision["model_columns"] < decision["encoder_columns"]  # own_event, the default
    if decision["used"]:
        assert decision["model_columns"] == len(spec.used_embedding_columns)
        assert f"{decision['model_columns']} of the encoder's" in page


def test_auto_without_events_is_off_and_on_is_refused(loop_dataset):
    dataset, _ = loop_dataset
    assert iteration_params_clean({}, dataset=dataset)["use_embeddings"] == "auto"
    with pytest.raises(IterationParamsError, match="choose auto or off"):
        iteration_params_clean({"use_embeddings": "on"}, dataset=dataset)
    with pytest.raises(IterationParamsError, match="expected auto, on or off"):
        iteration_params_clean({"use_embeddings": "sometimes"}, dataset=dataset)


def test_knn_feature_param_is_off_by_default_and_validated(db):
    assert iteration_params_clean({})["knn_feature"] is False
    assert iteration_params_clean({"knn_feature": "on"})["knn_feature"] is True
    with pytest.raises(IterationParamsError) as err:
        iteration_params_clean({"knn_feature": "maybe"})
    assert set(err.value.errors) == {"knn_feature"}
    no_numeric = Dataset(schema={"cases": {"numeric": [], "categorical": ["a"]}}, n_events=0)
    with pytest.raises(IterationParamsError, match="embeddings or numeric"):
        iteration_params_clean({"knn_feature": True}, dataset=no_numeric)
    clash = Dataset(schema={"cases": {"numeric": [KNN_FEATURE]}}, feature_columns=[KNN_FEATURE])
    with pytest.raises(IterationParamsError, match="already has a case column"):
        iteration_params_clean({"knn_feature": True}, dataset=clash)


def test_knn_feature_iteration_trains_on_the_share_of_known_positives(loop_dataset, expert_client):
    dataset, cases = loop_dataset
    # Experts confirmed half the cases of a pattern that lies in a ball of the numeric columns:
    # the share of positives among neighbours finds the ball's rest better than raw splits.
    space = knn_space(None, cases[["amount", "n_tx_7d"]].to_numpy(dtype=np.float32))
    centre = np.array([1.0, 0.5]) * space.std(axis=0)
    ball = np.linalg.norm(space - centre, axis=1) < 0.5 * space.std(axis=0).mean()
    seeds = cases["seed_positive"].to_numpy() == 1
    confirmed = ball & ~seeds & (np.random.default_rng(0).random(len(cases)) < 0.5)
    Case.objects.filter(dataset=dataset, row__in=np.flatnonzero(confirmed).tolist()).update(
        pool_state="confirmed"
    )
    iteration = _queued(dataset, knn_feature=True)
    result = iteration_execute(iteration_id=iteration.pk)
    iteration.refresh_from_db()
    assert result["status"] == "done", iteration.log
    version = iteration.model_version
    folder = Path(version.artifact_dir)
    spec = FeatureSpec.load(folder / "feature_spec.json")
    assert spec.knn_neighbors == 10 and spec.feature_names[-1] == KNN_FEATURE
    assert version.feature_names == spec.feature_names
    # The stored column is the share among neighbours in the scaled numeric columns, with the
    # seeds and confirmed cases as P (never the ground-truth label), each case left out.
    assert spec.numeric_columns == ["amount", "n_tx_7d"]
    share = np.load(folder / "knn_feature.npy")
    expected = knn_positive_share(knn_index(space), seeds | confirmed)
    np.testing.assert_allclose(share, expected)
    assert not np.allclose(share, knn_positive_share(knn_index(space), cases["label"] == 1))
    # The model uses it: the column is split on, and the iteration says how it was computed.
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    assert booster.num_feature() == len(spec.feature_names)  # the last column is the share
    gains = booster.feature_importance(importance_type="gain")
    assert gains[-1] > 0 and KNN_FEATURE in [f["name"] for f in version.metrics["top_features"]]
    assert iteration.metrics["knn_feature"]["method"] == "exact"
    assert "kNN feature knn_positive_share" in iteration.log
    # A helper worker rebuilding a chunk from the snapshot gets the same scores.
    (folder / "scores").mkdir()
    (folder / "inputs.json").write_text(json.dumps({"snapshot": dataset.snapshot_dir}))
    parts = [score_chunk(folder, a, b) for a, b in chunk_plan(len(cases), 700)]
    np.testing.assert_allclose(np.concatenate(parts), np.load(folder / "scores.npy"), rtol=1e-6)
    # The version page lists the parameter.
    page = expert_client.get(reverse("model-detail", args=[version.pk]))
    assert page.status_code == 200 and b"knn_feature" in page.content


def test_iteration_page_is_addressed_by_its_number(loop_dataset, expert_client):
    """The page of iteration #2 is .../iterations/2/ and says #2; links by database id (which
    differ from the number as soon as a second dataset exists) lead to it."""
    dataset, _ = loop_dataset
    other = Dataset.objects.create(name="other", status=Dataset.Status.READY)
    Iteration.objects.create(dataset=other, number=1)  # takes an id: ids and numbers part ways
    Iteration.objects.filter(pk=_queued(dataset).pk).update(status="done")
    second = _queued(dataset)
    assert second.number == 2 and second.pk != second.number
    url = reverse("iteration-detail", args=[dataset.name, 2])
    assert url == f"/datasets/{dataset.name}/iterations/2/"
    html = expert_client.get(url).content.decode()
    assert "<title>Iteration #2 · loopdata</title>" in html
    old = expert_client.get(f"/iterations/{second.pk}/")
    assert old.status_code == 302 and old["Location"] == url
    listing = expert_client.get(reverse("iteration-list", args=[dataset.name])).content.decode()
    assert f'href="{url}"' in listing


def test_eta_is_steady_through_pretraining_and_early_stages(loop_dataset):
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.selectors.iterations import iteration_progress
    from labelapp.services.pipeline import pretrain_progress

    dataset, _ = loop_dataset
    # The encoder re-estimates its step total at every report; the page gets the budget.
    reported = []

    class Reporter:
        def progress(self, done, total=None):
            reported.append((done, total))

    callback = pretrain_progress(Reporter(), budget_s=300)
    for step, total, elapsed in ((1, 5766, 0.9), (10, 185, 9.8), (20, 164, 21.0), (90, 179, 150)):
        callback(step, total, {"elapsed_s": elapsed})
    assert [total for _, total in reported] == [300] * 4
    assert [done for done, _ in reported] == [0, 9, 21, 150]

    iteration = _queued(dataset)
    now = timezone.now()
    # One minute of loading data before the first step: the ETA is still the budget left.
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running",
        stage="pretrain",
        progress_done=1,
        progress_total=300,
        started_at=now - timedelta(seconds=65),
        stage_started_at=now - timedelta(seconds=61),
    )
    iteration.refresh_from_db()
    progress = iteration_progress(iteration)
    assert progress.eta_s == 299 and progress.unit == "s"
    # A linear ETA from 1 of 40 done would mostly measure the start-up: none until 5%.
    Iteration.objects.filter(pk=iteration.pk).update(
        stage="score", progress_done=1, progress_total=40
    )
    iteration.refresh_from_db()
    assert iteration_progress(iteration).eta_s is None
    Iteration.objects.filter(pk=iteration.pk).update(progress_done=10)
    iteration.refresh_from_db()
    assert iteration_progress(iteration).eta_s == pytest.approx(61 * 3, rel=0.05)


def test_the_page_shows_positives_left_with_an_interval_once_a_batch_is_answered(
    loop_dataset, expert_client
):
    from labelapp.models import PoolState

    dataset, cases = loop_dataset
    first = _queued(dataset)
    assert iteration_execute(iteration_id=first.pk)["status"] == "done"
    first.refresh_from_db()
    assert first.metrics["stopping"]["estimated_positives_left"] is None  # nothing answered
    page = expert_client.get(reverse("iteration-detail", args=[dataset.name, first.number]))
    assert "n/a until a batch has answers" in page.content.decode()
    # The expert answers the batch: the truth of the planted pattern decides.
    truth = cases.set_index("case_id")["label"] if "label" in cases else None
    for item in first.batch.select_related("case"):
        yes = bool(truth[item.case.case_id]) if truth is not None else item.position % 3 == 0
        state = PoolState.CONFIRMED if yes else PoolState.NOT_CONFIRMED
        Case.objects.filter(pk=item.case_id).update(pool_state=state)
    second = _queued(dataset)
    assert iteration_execute(iteration_id=second.pk)["status"] == "done"
    second.refresh_from_db()
    stop = second.metrics["stopping"]
    assert stop["positives_left_low"] <= stop["estimated_positives_left"]
    assert stop["estimated_positives_left"] <= stop["positives_left_high"]
    # The estimate followed the batch (experts did not wait for its three fits).
    assert second.metrics["positives_left_pending"] is False
    assert second.metrics["positives_left_seconds"] >= 0
    assert "positives left in U estimated" in second.log
    assert "estimate" not in second.metrics["stage_seconds"]
    body = expert_client.get(
        reverse("iteration-detail", args=[dataset.name, second.number])
    ).content.decode()
    assert 'id="positives-left-interval"' in body and "90% interval" in body
    # Between the batch and the estimate the page says it is coming.
    pending = {**second.metrics, "positives_left_pending": True}
    pending["stopping"] = {**stop, "estimated_positives_left": None}
    Iteration.objects.filter(pk=second.pk).update(metrics=pending)
    body = expert_client.get(
        reverse("iteration-detail", args=[dataset.name, second.number])
    ).content.decode()
    assert 'id="positives-left-pending"' in body and "follows the batch" in body


def test_launch_refuses_a_dataset_that_cannot_train_with_the_reason(
    loop_dataset, admin_user, admin_client
):
    from labelapp.models import PoolState

    dataset, _ = loop_dataset
    Case.objects.filter(dataset=dataset).update(pool_state=PoolState.UNLABELED)
    with pytest.raises(IterationParamsError) as err:
        iteration_launch(dataset=dataset, user=admin_user, params=FAST)
    assert "needs at least 2" in err.value.errors["positives"]
    assert not Iteration.objects.filter(dataset=dataset).exists()  # nothing queued to fail
    page = admin_client.post(reverse("iteration-launch", args=[dataset.name]), FAST)
    assert page.status_code == 200 and "Mark seed positives first" in page.content.decode()
