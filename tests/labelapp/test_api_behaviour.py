"""What the endpoints do: filters, labels with the pool rule, errors that say what is wrong,
throttling, tokens, import reports, promotion and downloads (API and the model page)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labelapp.models import AuditEvent, Case, Dataset, Label
from learning.bundle import MANIFEST, verify_bundle
from tests.labelapp.api_fixtures import *  # noqa: F403
from tests.labelapp.api_fixtures import api_client_for
from tests.labelapp.conftest import PASSWORD


# -- cases -----------------------------------------------------------------------------------------
def test_case_filters(world):
    client = world.client("admin")
    url = "/api/datasets/toy/cases/"
    everything = client.get(url, {"page_size": 100}).json()
    assert everything["count"] == 40
    seeds = client.get(url, {"pool_state": "P"}).json()
    assert seeds["count"] == 6 and {c["pool_state"] for c in seeds["results"]} == {"P"}
    both = client.get(url, {"pool_state": "P,confirmed"}).json()
    assert both["count"] == 7
    top = client.get(url, {"score_min": 0.5, "ordering": "-score"}).json()["results"]
    assert top and all(c["score"] >= 0.5 for c in top)
    assert [c["score"] for c in top] == sorted((c["score"] for c in top), reverse=True)
    confirmed = client.get(url, {"answer": "confirmed"}).json()
    assert [c["id"] for c in confirmed["results"]] == [world.labeled_case.pk]
    assert confirmed["results"][0]["current_answer"] == "confirmed"
    unanswered = client.get(url, {"answer": "none"}).json()
    assert unanswered["count"] == 39
    in_batch = client.get(url, {"iteration": world.iteration.pk}).json()
    assert in_batch["count"] == 4
    page = client.get(url, {"page_size": 7, "page": 2}).json()
    assert len(page["results"]) == 7 and page["previous"] and page["next"]


def test_expert_sees_only_their_cases(world):
    cases = world.client("expert").get("/api/datasets/toy/cases/").json()
    assert {c["id"] for c in cases["results"]} == {world.visible_case.pk, world.labeled_case.pk}


@pytest.mark.parametrize(
    "query, field",
    [
        ({"pool_state": "nope"}, "pool_state"),
        ({"score_min": "high"}, "score_min"),
        ({"score_min": "nan"}, "score_min"),
        ({"score_min": 0.9, "score_max": 0.1}, "score_min"),
        ({"answer": "maybe"}, "answer"),
        ({"iteration": "-3"}, "iteration"),
        ({"ordering": "random()"}, "ordering"),
    ],
)
def test_bad_filters_say_what_is_wrong(world, query, field):
    response = world.client("admin").get("/api/datasets/toy/cases/", query)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["code"] == "invalid"
    assert field in body["errors"] and field in body["detail"]


def test_case_detail_has_score_contributions_and_history(world):
    body = world.client("expert").get(f"/api/cases/{world.labeled_case.pk}/").json()
    assert body["case_id"] == world.labeled_case.case_id
    assert body["score"] == pytest.approx(Case.objects.get(pk=world.labeled_case.pk).score)
    assert body["model_version"] == world.model_version.pk
    assert body["explanation_error"] is None
    assert body["contributions"], body
    assert {c["feature"] for c in body["contributions"]} <= set(world.model_version.feature_names)
    assert [label["answer"] for label in body["labels"]] == ["confirmed"]
    assert body["batch_items"][0]["iteration"] == world.iteration.pk


def test_bad_page_and_unknown_objects_are_json_errors(world):
    client = world.client("admin")
    response = client.get("/api/datasets/toy/cases/", {"page": 999})
    assert response.status_code == 404 and response.json()["detail"]
    response = client.get("/api/datasets/nope/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    response = client.post("/api/labels/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


# -- labels ----------------------------------------------------------------------------------------
def test_label_create_applies_the_pool_rule_and_is_idempotent(world):
    client = world.client("expert")
    body = {"case": world.visible_case.pk, "answer": "confirmed", "idempotency_key": "k-1"}
    first = client.post("/api/labels/", body, format="json")
    assert first.status_code == 201, first.json()
    assert first.json()["via"] == "api" and first.json()["user"] == "eve-expert"
    assert Case.objects.get(pk=world.visible_case.pk).pool_state == "confirmed"
    again = client.post("/api/labels/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert Label.objects.filter(case=world.visible_case).count() == 1
    event = AuditEvent.objects.filter(verb="label.create", via="api").latest("id")
    assert event.target_id == str(first.json()["id"])


def test_second_answer_is_a_conflict_with_a_reason(world):
    body = {"case": world.labeled_case.pk, "answer": "not_confirmed"}
    response = world.client("admin").post("/api/labels/", body, format="json")
    assert response.status_code == 409
    assert "already answered" in response.json()["detail"]


def test_undo_restores_the_case(world):
    client = world.client("expert")
    response = client.post(f"/api/labels/{world.expert_label.pk}/undo/")
    assert response.status_code == 201
    assert response.json()["answer"] == "undone"
    assert Case.objects.get(pk=world.labeled_case.pk).pool_state == "shown"
    again = client.post(f"/api/labels/{world.expert_label.pk}/undo/")
    assert again.status_code == 409 and "already undone" in again.json()["detail"]


def test_label_input_errors(world):
    client = world.client("expert")
    response = client.post("/api/labels/", {"case": world.visible_case.pk}, format="json")
    assert response.status_code == 400 and "answer" in response.json()["errors"]
    response = client.post(
        "/api/labels/", {"case": world.hidden_case.pk, "answer": "confirmed"}, format="json"
    )
    assert response.status_code == 404  # not in the expert's queue
    response = client.post(
        "/api/labels/",
        {"case": world.visible_case.pk, "answer": "confirmed", "pattern": "no-such-pattern"},
        format="json",
    )
    assert response.status_code == 400 and "pattern" in response.json()["errors"]


def test_queue_next_leases_a_case(world, second_expert):
    client = api_client_for(second_expert)
    response = client.post("/api/datasets/toy/queue/next/")
    assert response.status_code == 200
    leased = response.json()["id"]
    assert leased not in (world.visible_case.pk, world.labeled_case.pk)
    detail = client.get(f"/api/cases/{leased}/")
    assert detail.status_code == 200  # now in their queue


# -- auth and throttling ---------------------------------------------------------------------------
def test_token_for_credentials_and_me(world):
    client = api_client_for(None)
    bad = client.post("/api/auth/token/", {"username": "eve-expert", "password": "wrong"})
    assert bad.status_code == 400 and bad.json()["detail"]
    good = client.post("/api/auth/token/", {"username": "eve-expert", "password": PASSWORD})
    assert good.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {good.json()['token']}")
    assert client.get("/api/me/").json()["roles"] == ["expert"]
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/me/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


def test_session_login_works_too(world, expert_client):
    assert expert_client.get("/api/datasets/").status_code == 200


def test_scoped_throttle_answers_429_with_retry_after(world, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "scoring": "2/min",
        },
    }
    client = world.client("admin")
    body = {"model_version": world.model_version.pk, "cases": [{"case_id": "x"}]}
    codes = [client.post("/api/score/", body, format="json").status_code for _ in range(3)]
    assert codes[:2] != [429, 429] and codes[2] == 429
    response = client.post("/api/score/", body, format="json")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"
    assert world.client("admin").get("/api/datasets/").status_code == 200  # other scopes free


# -- scoring ---------------------------------------------------------------------------------------
def test_scoring_matches_stored_scores_and_explains_bad_input(world):
    client = world.client("admin")
    cases = list(world.dataset.cases.order_by("row")[:5])
    body = {
        "dataset": "toy",  # its current model
        "cases": [
            {"case_id": c.case_id, "entity_id": c.entity_id, "ts": c.ts.isoformat(), **c.features}
            for c in cases
        ],
    }
    response = client.post("/api/score/", body, format="json")
    assert response.status_code == 200, response.json()
    got = [s["score"] for s in response.json()["scores"]]
    assert got == pytest.approx([c.score for c in cases], abs=1e-6)

    del body["cases"][0]["amount"]
    for case in body["cases"]:
        case.pop("amount", None)
    response = client.post("/api/score/", body, format="json")
    assert response.status_code == 400 and "amount" in response.json()["detail"]
    response = client.post("/api/score/", {"dataset": "toy", "cases": [{"a": {"b": 1}}]})
    assert response.status_code == 400
    response = client.post("/api/score/", {"cases": [{"a": 1}]}, format="json")
    assert response.status_code == 400 and "model_version or dataset" in response.json()["detail"]


def test_a_body_over_the_limit_is_a_json_413(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"dataset": "toy", "cases": [{"case_id": f"c{i}", "amount": 1.0} for i in range(2000)]}
    response = world.client("admin").post("/api/score/", body, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and "fewer" in response.json()["detail"]


# -- import ----------------------------------------------------------------------------------------
def test_import_rejected_with_a_report(world):
    cases = b"case_id,entity_id,amount\nx1,e1,3.5\nx1,e2,abc\n"
    response = world.client("admin").post(
        "/api/datasets/import/",
        {"name": "bad", "cases": SimpleUploadedFile("cases.csv", cases)},
        format="multipart",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "import_rejected" and "nothing was written" in body["detail"]
    assert body["report"]["problems"]
    assert not Dataset.objects.filter(name="bad").exists()
    from django.conf import settings

    left = {path.name for path in Path(settings.UPLOADS_DIR).iterdir()}
    assert left == {world.upload_id}, "a rejected upload leaves no folder"


def test_import_then_status_and_report(world):
    cases = b"case_id,entity_id,ts,amount\nx1,e1,2024-01-01T00:00:00Z,3.5\n"
    response = world.client("admin").post(
        "/api/datasets/import/",
        {"name": "fresh", "cases": SimpleUploadedFile("cases.csv", cases), "description": "d"},
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "ready" and response.json()["description"] == "d"
    report = world.client("admin").get("/api/datasets/fresh/report/").json()
    assert report["report"]["ok"] is True


def test_large_upload_is_queued_for_a_worker(world, settings, django_capture_on_commit_callbacks):
    settings.IMPORT_INLINE_MAX_BYTES = 10
    cases = b"case_id,entity_id\nx1,e1\nx2,e2\n"
    with django_capture_on_commit_callbacks() as callbacks:
        response = world.client("admin").post(
            "/api/datasets/import/",
            {"name": "big", "cases": SimpleUploadedFile("cases.csv", cases)},
            format="multipart",
        )
    assert response.status_code == 202
    assert response.json()["state"] == "queued" and len(callbacks) == 1
    status = world.client("admin").get(response["Location"])
    assert status.status_code == 200 and status.json()["upload_id"] == response.json()["upload_id"]


# -- models ----------------------------------------------------------------------------------------
def test_model_detail_promote_and_conflicts(world, trained_artifacts):
    from tests.labelapp.model_factories import make_model_version

    client = world.client("admin")
    older = make_model_version(world.dataset, trained_artifacts, current=False, train=False)
    listed = client.get("/api/datasets/toy/models/").json()
    assert {m["id"] for m in listed["results"]} == {world.model_version.pk, older.pk}
    response = client.post(f"/api/models/{older.pk}/promote/")
    assert response.status_code == 200 and response.json()["is_current"] is True
    assert Dataset.objects.get(name="toy").current_model_id == older.pk
    assert AuditEvent.objects.filter(verb="model.promote", via="api").exists()
    response = client.post("/api/datasets/toy/iterations/", {"batch_size": 0}, format="json")
    assert response.status_code == 400 and "batch_size" in response.json()["errors"]


def test_iteration_launch_conflict_and_cancel(world):
    client = world.client("admin")
    params = {"batch_size": 5, "n_clusters": 2, "pool_size": 10, "use_embeddings": False}
    first = client.post("/api/datasets/toy/iterations/", params, format="json")
    assert first.status_code == 201 and first.json()["status"] == "queued"
    second = client.post("/api/datasets/toy/iterations/", params, format="json")
    assert second.status_code == 409 and "already" in second.json()["detail"]
    cancel = client.post(f"/api/iterations/{first.json()['id']}/cancel/")
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert client.post(f"/api/iterations/{first.json()['id']}/cancel/").status_code == 409
    retry = client.post(f"/api/iterations/{first.json()['id']}/retry/")
    assert retry.status_code == 201 and retry.json()["retry_of"] == first.json()["id"]


def test_download_from_the_model_page(world, admin_client, expert_client):
    page = admin_client.get(reverse("model-detail", args=[world.model_version.pk]))
    url = reverse("model-download", args=[world.model_version.pk])
    assert url in page.content.decode()
    response = admin_client.get(url)
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {MANIFEST, "model.txt", "model_card.md"} <= set(archive.namelist())
    event = AuditEvent.objects.get(verb="model.export")
    assert event.via == "page" and event.actor.username == "alice-admin"
    assert expert_client.get(url).status_code == 403


def test_download_of_a_model_without_artifacts_is_422(world, tmp_path):
    from labelapp.models import ModelVersion

    empty = ModelVersion.objects.create(dataset=world.dataset, artifact_dir=str(tmp_path / "gone"))
    response = world.client("admin").get(f"/api/models/{empty.pk}/download/")
    assert response.status_code == 422 and "cannot be exported" in response.json()["detail"]


def test_downloaded_bundle_verifies(world, tmp_path):
    response = world.client("admin").get(f"/api/models/{world.model_version.pk}/download/")
    path = tmp_path / "b.zip"
    path.write_bytes(b"".join(response.streaming_content))
    assert int(response["Content-Length"]) == path.stat().st_size
    manifest = verify_bundle(path)
    assert manifest.info["dataset"] == "toy"
