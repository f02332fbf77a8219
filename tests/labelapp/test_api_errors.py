"""Every error under /api/ is JSON in the API's one shape: malformed ids, unknown paths, crashes.

The crash test mounts the app's URLs under a test URL map with one endpoint that fails
(``@pytest.mark.urls``): the error handlers are the app's own, imported below.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLResolver, get_resolver, include, path
from rest_framework.test import APIClient

from labelapp.urls import handler400, handler403, handler404, handler500  # noqa: F401
from tests.labelapp.api_fixtures import *  # noqa: F403


def _boom(request):
    raise RuntimeError("a bug the API's handlers did not expect")


urlpatterns = [path("api/boom/", _boom), path("", include("labelapp.urls"))]


def api_routes_with_ids() -> list[str]:
    """Every API route with a numeric id, the id written as ``abc``."""
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver) and str(pattern.pattern) == "api/":
            routes = [str(p.pattern) for p in pattern.url_patterns]
    return [re.sub(r"<id:\w+>", "abc", r) for r in routes if "<id:" in r]


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["detail"], body
    return body


def test_every_api_detail_route_is_tested():
    assert sorted(api_routes_with_ids()) == sorted(
        [
            "cases/abc/",
            "labels/abc/undo/",
            "iterations/abc/",
            "iterations/abc/cancel/",
            "iterations/abc/retry/",
            "models/abc/",
            "models/abc/promote/",
            "models/abc/download/",
            "models/abc/rules/",
            "seeds/abc/undo/",
        ]
    )


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("route", api_routes_with_ids())
def test_a_non_numeric_id_is_a_json_404(world, settings, route, method, debug):
    settings.DEBUG = debug
    response = getattr(world.client("admin"), method)(f"/api/{route}")
    body = assert_json_error(response, 404, "not_found")
    assert "numbers" in body["detail"]


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_paths_are_json_404s(db, settings, debug):
    settings.DEBUG = debug
    client = APIClient()
    assert_json_error(client.get("/api/nothing-here/"), 404, "not_found")
    assert_json_error(client.post("/api/datasets/toy/nothing/"), 404, "not_found")
    no_slash = assert_json_error(client.post("/api/labels"), 404, "not_found")
    assert "end with a slash: /api/labels/" in no_slash["detail"]


def test_a_post_with_a_session_cookie_and_no_csrf_token_is_still_json(admin_user):
    """A browser session (cookies, no CSRF token) posting to a malformed id: a JSON 404, not
    Django's HTML CSRF page; to an endpoint: DRF's JSON 403."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert_json_error(browser.post("/api/models/abc/promote/"), 404, "not_found")
    body = assert_json_error(browser.post("/api/labels/", {}), 403, "permission_denied")
    assert "CSRF" in body["detail"]


def test_pages_keep_their_html_404(admin_client):
    response = admin_client.get("/cases/abc/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_a_crash_under_api_is_a_json_500(db, settings, debug, caplog):
    settings.DEBUG = debug
    response = APIClient().get("/api/boom/")
    body = assert_json_error(response, 500, "server_error")
    assert "RuntimeError" not in body["detail"]  # no internals to the caller
    assert any("Internal Server Error: /api/boom/" in r.getMessage() for r in caplog.records)
