"""The permission matrix: every endpoint, for an admin, an expert, a user without role, anonymous.

Admins may do everything; experts read datasets, the cases in their queue, their labels,
iterations and model versions, and label; a user without a role may do nothing (403); anonymous
callers get 401.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.labelapp.api_fixtures import *  # noqa: F403
from tests.labelapp.api_fixtures import PERSONAS


@dataclass(frozen=True)
class Call:
    method: str
    url: Callable  # world -> str
    expected: tuple[int | tuple[int, ...], ...]  # admin, expert, outsider, anonymous
    body: Callable | None = None  # (world, persona) -> dict
    format: str = "json"


def _score_body(w, persona):
    cases = [
        {"case_id": c.case_id, "entity_id": c.entity_id, "ts": c.ts.isoformat(), **c.features}
        for c in w.dataset.cases.order_by("row")[:3]
    ]
    return {"model_version": w.model_version.pk, "cases": cases}


def _label_body(w, persona):
    return {"case": w.visible_case.pk, "answer": "not_confirmed", "comment": f"by {persona}"}


def _import_body(w, persona):
    from django.core.files.uploadedfile import SimpleUploadedFile

    cases = (
        "case_id,entity_id,ts,amount\n"
        "x1,e1,2024-01-01T00:00:00Z,3.5\n"
        "x2,e1,2024-01-02T00:00:00Z,4\n"
    )
    return {"name": f"up-{persona}", "cases": SimpleUploadedFile("cases.csv", cases.encode())}


def _seed_body(w, persona):
    return {"rule": "amount > 100"}


def _launch_body(w, persona):
    return {"batch_size": 5, "n_clusters": 2, "pool_size": 10, "use_embeddings": False}


MATRIX: dict[str, Call] = {
    "schema": Call("get", lambda w: "/api/schema/", (200, 200, 200, 200)),
    "docs": Call("get", lambda w: "/api/docs/", (200, 200, 200, 200)),
    "redoc": Call("get", lambda w: "/api/redoc/", (200, 200, 200, 200)),
    "me": Call("get", lambda w: "/api/me/", (200, 200, 200, 401)),
    "dataset list": Call("get", lambda w: "/api/datasets/", (200, 200, 403, 401)),
    "dataset detail": Call("get", lambda w: "/api/datasets/toy/", (200, 200, 403, 401)),
    "dataset report": Call("get", lambda w: "/api/datasets/toy/report/", (200, 403, 403, 401)),
    "dataset import": Call(
        "post", lambda w: "/api/datasets/import/", (201, 403, 403, 401), _import_body, "multipart"
    ),
    "import status": Call("get", lambda w: f"/api/imports/{w.upload_id}/", (200, 403, 403, 401)),
    "case list": Call("get", lambda w: "/api/datasets/toy/cases/", (200, 200, 403, 401)),
    "case in queue": Call(
        "get", lambda w: f"/api/cases/{w.visible_case.pk}/", (200, 200, 403, 401)
    ),
    "case labeled": Call("get", lambda w: f"/api/cases/{w.labeled_case.pk}/", (200, 200, 403, 401)),
    "case outside queue": Call(
        "get", lambda w: f"/api/cases/{w.hidden_case.pk}/", (200, 404, 403, 401)
    ),
    "queue next": Call("post", lambda w: "/api/datasets/toy/queue/next/", (200, 200, 403, 401)),
    "label list": Call("get", lambda w: "/api/labels/", (200, 200, 403, 401)),
    "label create": Call("post", lambda w: "/api/labels/", (201, 201, 403, 401), _label_body),
    "label undo": Call(
        "post", lambda w: f"/api/labels/{w.expert_label.pk}/undo/", (403, 201, 403, 401)
    ),
    "iteration list": Call("get", lambda w: "/api/datasets/toy/iterations/", (200, 200, 403, 401)),
    "iteration launch": Call(
        "post", lambda w: "/api/datasets/toy/iterations/", (201, 403, 403, 401), _launch_body
    ),
    "iteration detail": Call(
        "get", lambda w: f"/api/iterations/{w.iteration.pk}/", (200, 200, 403, 401)
    ),
    "iteration cancel": Call(
        "post", lambda w: f"/api/iterations/{w.running.pk}/cancel/", (200, 403, 403, 401)
    ),
    "iteration retry": Call(
        "post", lambda w: f"/api/iterations/{w.failed.pk}/retry/", (201, 403, 403, 401)
    ),
    "model list": Call("get", lambda w: "/api/datasets/toy/models/", (200, 200, 403, 401)),
    "model detail": Call(
        "get", lambda w: f"/api/models/{w.model_version.pk}/", (200, 200, 403, 401)
    ),
    "model promote": Call(
        "post", lambda w: f"/api/models/{w.model_version.pk}/promote/", (200, 403, 403, 401)
    ),
    "model download": Call(
        "get", lambda w: f"/api/models/{w.model_version.pk}/download/", (200, 403, 403, 401)
    ),
    # The world's version has no snapshot of its cases: 409 says so (test_rules_export has one).
    "model rules": Call(
        "get", lambda w: f"/api/models/{w.model_version.pk}/rules/", (409, 409, 403, 401)
    ),
    "score": Call("post", lambda w: "/api/score/", (200, 403, 403, 401), _score_body),
    "seeds list": Call("get", lambda w: "/api/datasets/toy/seeds/", (200, 403, 403, 401)),
    "seeds preview": Call(
        "post", lambda w: "/api/datasets/toy/seeds/preview/", (200, 403, 403, 401), _seed_body
    ),
    "seeds apply": Call(
        "post", lambda w: "/api/datasets/toy/seeds/", (200, 403, 403, 401), _seed_body
    ),
    # No seed change exists in the world: admins reach the lookup (404), others are refused.
    "seeds undo": Call("post", lambda w: "/api/seeds/999999/undo/", (404, 403, 403, 401)),
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("endpoint", list(MATRIX))
def test_permission_matrix(world, endpoint, persona):
    call = MATRIX[endpoint]
    expected = call.expected[PERSONAS.index(persona)]
    client = world.client(persona)
    kwargs = {}
    if call.body is not None:
        kwargs = {"data": call.body(world, persona), "format": call.format}
    response = getattr(client, call.method)(call.url(world), **kwargs)
    assert response.status_code == expected, (endpoint, persona, _content(response))
    if expected in (401, 403, 404):
        body = response.json()
        assert body["status"] == expected and body["detail"], body
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Token")


def _content(response) -> str:
    if response.get("Content-Type", "").startswith("application/json"):
        return str(response.json())[:500]
    return response.get("Content-Type", "")


def test_every_api_route_is_in_the_matrix():
    """A new endpoint without a row here fails: permissions are checked for all of them."""
    from django.urls import get_resolver

    resolver = get_resolver()
    api_routes = set()
    for pattern in resolver.url_patterns:
        if str(pattern.pattern) == "api/":
            api_routes = {str(p.pattern) for p in pattern.url_patterns}
    covered = {
        "schema/",
        "docs/",
        "redoc/",
        "auth/token/",  # anyone: exchanging credentials for a token (tested in test_api_auth)
        "me/",
        "datasets/",
        "datasets/<str:name>/",
        "datasets/<str:name>/report/",
        "datasets/import/",
        "imports/<str:upload_id>/",
        "datasets/<str:name>/iterations/",
        "iterations/<id:pk>/",
        "iterations/<id:pk>/cancel/",
        "iterations/<id:pk>/retry/",
        "models/<id:pk>/promote/",
        "datasets/<str:name>/cases/",
        "cases/<id:pk>/",
        "datasets/<str:name>/queue/next/",
        "labels/",
        "datasets/<str:name>/seeds/",
        "datasets/<str:name>/seeds/preview/",
        "seeds/<id:pk>/undo/",
        "labels/<id:pk>/undo/",
        "datasets/<str:name>/models/",
        "models/<id:pk>/",
        "models/<id:pk>/download/",
        "models/<id:pk>/rules/",
        "score/",
        "^(?P<path>.*)$",  # the JSON 404 of every other path (test_api_errors)
    }
    assert api_routes == covered
