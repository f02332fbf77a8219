"""The map of a model version's cases: computed from a version the real pipeline built, served
as JSON, shown (or its state) on the version's page; recompute for admins only, audit-logged."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from labelapp.models import AuditEvent, BatchItem, Case, Iteration, ModelVersion, PoolState
from labelapp.selectors.case_map import MAP_FILE, STATUS_FILE, case_map_status
from labelapp.services.case_map import CaseMapError, case_map_build
from labelapp.services.iterations import iteration_params_clean
from labelapp.services.pipeline import iteration_execute
from tests.labelapp.factories import make_vector_dataset
from tests.labelapp.loop_data import make_loop_dataset

FAST = {
    "batch_size": 20,
    "n_clusters": 4,
    "pool_size": 100,
    "n_estimators": 30,
    "use_embeddings": False,
}


@pytest.fixture
def pipeline_version(transactional_db, tmp_path, settings, admin_user) -> ModelVersion:
    """A model version built in-process by the real pipeline (no embeddings: no events)."""
    settings.LOOP_THREADS = 1
    settings.LOOP_WORKER_NICE = 0
    dataset, _ = make_loop_dataset("mapdata", tmp_path / "snapshots", n_cases=1500)
    dataset.hidden_check_share = 0.1  # the batch holds hidden checks: seeds the experts see
    dataset.save(update_fields=["hidden_check_share"])
    iteration = Iteration.objects.create(
        dataset=dataset,
        number=1,
        params=iteration_params_clean(FAST, dataset=dataset),
        launched_by=admin_user,
    )
    result = iteration_execute(iteration_id=iteration.pk)
    assert result["status"] == "done", Iteration.objects.get(pk=iteration.pk).log
    iteration.refresh_from_db()
    return ModelVersion.objects.select_related("dataset").get(pk=iteration.model_version_id)


def test_the_iteration_queues_the_map_and_the_page_says_so(pipeline_version, expert_client):
    status = case_map_status(pipeline_version)
    assert status and status["state"] == "queued"  # finalize asked a worker for it
    page = expert_client.get(reverse("model-detail", args=[pipeline_version.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'id="case-map"' in html
    assert "waiting for a worker" in html and 'hx-trigger="every 2s"' in html
    assert "Compute the map" not in html  # the button is the admins'
    data = expert_client.get(reverse("model-map-data", args=[pipeline_version.pk]))
    assert data.status_code == 404 and "not computed yet" in data.json()["error"]


def test_map_of_a_pipeline_version_in_its_feature_space(
    pipeline_version, admin_client, expert_client, expert_user, outsider_client
):
    version = pipeline_version
    dataset = version.dataset
    result = case_map_build(model_version=version, sample_size=500)
    assert not (Path(version.artifact_dir) / STATUS_FILE).exists()
    assert (Path(version.artifact_dir) / MAP_FILE).exists()
    assert result["space"]["kind"] == "features" and result["method"] == "umap"
    assert "standardized" in result["space"]["label"]
    points = result["points"]
    assert result["sample_size"] == len(points["x"]) == 500 and result["n_cases"] == 1500
    # Every seed positive and every batch case is on the map, the rest drawn from U.
    n_seeds = Case.objects.filter(dataset=dataset, pool_state=PoolState.POSITIVE).count()
    batch = set(
        BatchItem.objects.filter(iteration=version.iteration).values_list("case", flat=True)
    )
    assert 0 < n_seeds == points["state"].count("P")
    assert batch and batch <= set(points["case"]) and sum(points["batch"]) == len(batch)
    # Each point is its case: id, state and the version's score of that case's row.
    scores = np.load(Path(version.artifact_dir) / "scores.npy")
    cases = {c.pk: c for c in Case.objects.filter(pk__in=points["case"])}
    for pk, case_id, state, score in zip(
        points["case"], points["case_id"], points["state"], points["score"], strict=True
    ):
        case = cases[pk]
        assert case.case_id == case_id and case.pool_state == state
        assert score == pytest.approx(float(scores[case.row]), rel=1e-3)
    assert 0.0 <= min(points["x"]) and max(points["y"]) <= 1.0

    page = expert_client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert "the version&#x27;s feature matrix" in page and "UMAP of 500 of 1500 cases" in page
    assert "case_map.js" in page and "data-case-map=" in page
    served = admin_client.get(reverse("model-map-data", args=[version.pk])).json()
    assert served["points"] == points and served["case_url"] == "/cases/{pk}/"
    # An expert sees every dot, but the id and page only of the cases theirs to see.
    mine = BatchItem.objects.filter(iteration=version.iteration).order_by("position").first()
    mine.assigned_to = expert_user
    mine.save(update_fields=["assigned_to"])
    served = expert_client.get(reverse("model-map-data", args=[version.pk]))
    seen = served.json()["points"]
    assert seen["score"] == points["score"] and seen["batch"] == points["batch"]
    assert [c for c in seen["case"] if c is not None] == [mine.case_id]
    assert [c for c in seen["case_id"] if c is not None] == [mine.case.case_id]
    other = next(c for c in points["case_id"] if c != mine.case.case_id)
    assert f'"{other}"'.encode() not in served.content
    # Hidden checks are P to an admin; an expert sees them as the batch's other cases.
    checks = set(
        BatchItem.objects.filter(iteration=version.iteration, is_check=True).values_list(
            "case", flat=True
        )
    )
    assert checks and checks <= set(points["case"])
    at = [i for i, pk in enumerate(points["case"]) if pk in checks]
    assert {points["state"][i] for i in at} == {"P"}
    assert {seen["state"][i] for i in at} == {"shown"}
    rest = [i for i in range(len(points["case"])) if i not in set(at)]
    assert [seen["state"][i] for i in rest] == [points["state"][i] for i in rest]
    assert served.json()["counts"]["P"] == points["state"].count("P") - len(checks)
    assert outsider_client.get(reverse("model-map-data", args=[version.pk])).status_code == 403
    assert outsider_client.get(reverse("model-map", args=[version.pk])).status_code == 403


def test_recompute_is_for_admins_audited_and_errors_are_shown(
    pipeline_version, admin_client, expert_client
):
    version = pipeline_version
    url = reverse("model-map-compute", args=[version.pk])
    assert expert_client.post(url).status_code == 403
    assert not AuditEvent.objects.filter(verb="model.map_compute").exists()
    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"].endswith("#case-map")
    assert case_map_status(version)["state"] == "queued"
    event = AuditEvent.objects.get(verb="model.map_compute")
    assert event.actor.username == "alice-admin"
    assert admin_client.get(url).status_code == 405

    # A computation whose worker died reads as failed after a while: the page stops waiting.
    status_path = Path(version.artifact_dir) / STATUS_FILE
    status = {"state": "running", "step": "projecting", "message": "", "since": "", "at": ""}
    status["at"] = status["since"] = (timezone.now() - timedelta(hours=1)).isoformat()
    status_path.write_text(json.dumps(status))
    assert case_map_status(version)["state"] == "failed"
    assert "no news from its worker" in case_map_status(version)["message"]
    page = admin_client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert "it stopped during: projecting" in page and 'hx-trigger="every 2s"' not in page

    (Path(version.artifact_dir) / "scores.npy").unlink()
    with pytest.raises(CaseMapError, match="no scores"):
        case_map_build(model_version=version)
    assert case_map_status(version)["state"] == "failed"
    page = admin_client.get(reverse("model-detail", args=[version.pk])).content.decode()
    assert "Computing the map failed:" in page and "scores.npy is missing" in page
    assert "Compute the map" in page


def test_the_map_reads_each_cases_own_embedding(db, tmp_path, settings):
    """Embeddings named by the version's inputs.json are projected, row for row: cases planted
    in three groups of embeddings come out as three groups on the map."""
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    rng = np.random.default_rng(0)
    n = 900
    group = np.arange(n) % 3  # interleaved: a row shift would mix the groups
    embeddings = (rng.normal(scale=8.0, size=(3, 16))[group] + rng.normal(size=(n, 16))).astype(
        np.float32
    )
    hand = rng.normal(size=(n, 2)).astype(np.float32)  # the hand features carry no groups
    dataset = make_vector_dataset("embmap", tmp_path / "snapshots", hand, [0, 3, 6])
    folder = tmp_path / "artifacts" / "models" / "v1"
    folder.mkdir(parents=True)
    np.save(tmp_path / "embeddings.npy", embeddings)
    np.save(folder / "scores.npy", rng.random(n).astype(np.float32))
    (folder / "inputs.json").write_text(
        json.dumps({"embeddings": str(tmp_path / "embeddings.npy")})
    )
    version = ModelVersion.objects.create(dataset=dataset, artifact_dir=str(folder))

    out = io.StringIO()
    call_command("compute_map", "--version", str(version.pk), "--sample", "600", stdout=out)
    assert "600 of 900 cases, umap of the version's behaviour-sequence embeddings" in out.getvalue()
    result = json.loads((folder / MAP_FILE).read_text())
    assert result["space"] == {
        "kind": "embeddings",
        "dim": 16,
        "label": "the version's behaviour-sequence embeddings (16 dimensions)",
    }
    rows = {c.pk: c.row for c in Case.objects.filter(dataset=dataset)}
    labels = np.array([group[rows[pk]] for pk in result["points"]["case"]])
    xy = np.column_stack([result["points"]["x"], result["points"]["y"]])
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :5]
    assert (labels[nearest] == labels[:, None]).mean() > 0.95
