"""The access policy: every page and fragment checks it, and the API gives each role the same.

``world`` (api_fixtures) holds a dataset whose batch has a case leased to the expert, a case the
expert answered and a ``hidden_case``; here the hidden case is leased to another expert, so the
expert may neither see it nor take it by opening its page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from labelapp.models import BatchItem, Label, NoiseFlag
from labelapp.policy import Action, allows
from tests.labelapp.api_fixtures import *  # noqa: F403
from tests.labelapp.factories import make_batch, make_pattern


def _page_routes() -> dict[str, URLPattern]:
    """Every named page and fragment URL (the admin site, the API and login pages aside)."""
    routes: dict[str, URLPattern] = {}

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif p.name and not route.startswith(("admin/", "api/", "accounts/")):
                routes[p.name] = p

    walk(get_resolver().url_patterns, "")
    return routes


@pytest.fixture
def hidden_world(world, second_expert):
    """``world`` with its hidden case held by another expert and a second look sent to them."""
    item = BatchItem.objects.get(case=world.hidden_case)
    item.assigned_to = second_expert
    item.lease_expires_at = timezone.now() + timedelta(minutes=15)
    item.save()
    (review_item,) = make_batch(world.other_dataset, size=1)
    world.flag = NoiseFlag.objects.create(
        dataset=world.dataset,
        case=world.hidden_case,
        kind="seed",
        methods=["rule"],
        reasons=["a rule's positive"],
        status=NoiseFlag.Status.SENT,
        reviewer=second_expert,
        review_item=review_item,
    )
    world.pattern = make_pattern()
    return world


#: Every page URL: its arguments, and whether it is about the hidden case itself.
PAGES = {
    "dataset-list": (lambda w: {}, False),
    "dataset-detail": (lambda w: {"name": w.dataset.name}, False),
    "dataset-hidden-checks": (lambda w: {"name": w.dataset.name}, False),
    "dataset-import": (lambda w: {}, False),
    "dataset-import-status": (lambda w: {"upload_id": w.upload_id}, False),
    "dataset-import-progress": (lambda w: {"upload_id": w.upload_id}, False),
    "iteration-list": (lambda w: {"name": w.dataset.name}, False),
    "iteration-launch": (lambda w: {"name": w.dataset.name}, False),
    "iteration-detail": (
        lambda w: {"name": w.iteration.dataset.name, "number": w.iteration.number},
        False,
    ),
    "iteration-by-id": (lambda w: {"pk": w.iteration.pk}, False),
    "iteration-progress": (lambda w: {"pk": w.iteration.pk}, False),
    "iteration-cancel": (lambda w: {"pk": w.running.pk}, False),
    "iteration-retry": (lambda w: {"pk": w.failed.pk}, False),
    "model-list": (lambda w: {"name": w.dataset.name}, False),
    "model-compare": (lambda w: {"name": w.dataset.name}, False),
    "model-rollback": (lambda w: {"name": w.dataset.name}, False),
    "model-detail": (lambda w: {"pk": w.model_version.pk}, False),
    "model-promote": (lambda w: {"pk": w.model_version.pk}, False),
    "model-download": (lambda w: {"pk": w.model_version.pk}, False),
    "model-map": (lambda w: {"pk": w.model_version.pk}, False),
    "model-map-data": (lambda w: {"pk": w.model_version.pk}, False),
    "model-map-compute": (lambda w: {"pk": w.model_version.pk}, False),
    "model-rules": (lambda w: {"pk": w.model_version.pk}, False),
    "queue": (lambda w: {"name": w.dataset.name}, False),
    "queue-next": (lambda w: {"name": w.dataset.name}, False),
    "queue-undo": (lambda w: {"name": w.dataset.name}, False),
    "queue-double-labeling": (lambda w: {"name": w.dataset.name}, False),
    "case-detail": (lambda w: {"pk": w.hidden_case.pk}, True),
    "case-answer": (lambda w: {"pk": w.hidden_case.pk}, True),
    "case-similar": (lambda w: {"pk": w.hidden_case.pk}, True),
    "case-more-like-this": (lambda w: {"pk": w.hidden_case.pk}, True),
    "expert-stats": (lambda w: {}, False),
    "pattern-list": (lambda w: {}, False),
    "pattern-edit": (lambda w: {"pk": w.pattern.pk}, False),
    "pattern-delete": (lambda w: {"pk": w.pattern.pk}, False),
    "label-audit": (lambda w: {"name": w.dataset.name}, False),
    "label-audit-run": (lambda w: {"name": w.dataset.name}, False),
    "label-audit-send": (lambda w: {"name": w.dataset.name}, False),
    "label-audit-reviews": (lambda w: {}, False),
    "label-audit-review": (lambda w: {"pk": w.flag.pk}, True),
    "seeds": (lambda w: {"name": w.dataset.name}, False),
    "seeds-apply": (lambda w: {"name": w.dataset.name}, False),
    "seeds-undo": (lambda w: {"name": w.dataset.name, "pk": 1}, False),
    "case-seed": (lambda w: {"pk": w.hidden_case.pk}, True),
    "case-explorer": (lambda w: {"name": w.dataset.name}, False),
}


def test_every_page_url_is_walked_and_has_a_policy_action():
    routes = _page_routes()
    assert set(routes) == set(PAGES), "classify the new page URL in PAGES"
    for name, route in routes.items():
        assert isinstance(getattr(route.callback, "policy_action", None), Action), name


def test_an_expert_reaches_no_other_experts_case_through_any_page(hidden_world, expert_user):
    """GET and POST (plain and htmx) on every page and fragment as an expert who does not hold
    the hidden case: its URLs refuse (403/404, or 405 for the other method), the rest answer by
    the policy, and no body names the hidden case or links to it."""
    w = hidden_world
    hidden = w.hidden_case
    traces = (hidden.case_id, f"/cases/{hidden.pk}/")
    post = {
        "answer": "confirmed",
        "case": hidden.pk,
        "comment": "x",
        "size": 5,
        "flag": w.flag.pk,
        "reviewer": expert_user.pk,
        "percent": 10,
    }
    client = Client()
    client.force_login(expert_user)
    routes = _page_routes()
    for name, (kwargs, about_hidden) in PAGES.items():
        url = reverse(name, kwargs=kwargs(w))
        allowed = allows(expert_user, routes[name].callback.policy_action)
        for method, htmx in (("get", False), ("post", False), ("post", True)):
            extra = {"HTTP_HX_REQUEST": "true"} if htmx else {}
            data = post if method == "post" else {}
            response = getattr(client, method)(url, data, **extra)
            what = (name, method, htmx, response.status_code)
            if about_hidden:
                assert response.status_code in (403, 404, 405), what
            elif not allowed:
                assert response.status_code == 403, what
            else:
                assert response.status_code < 500, what
            body = b"".join(response) if response.streaming else response.content
            for trace in traces:
                assert trace.encode() not in body, (*what, trace)
        if about_hidden:
            gets, posts = client.get(url).status_code, client.post(url, post).status_code
            assert {gets, posts} & {403, 404}, (name, gets, posts)
    assert not Label.objects.filter(case=hidden).exists()
    assert BatchItem.objects.get(case=hidden).assigned_to.username == "bob-expert"


# --- pages and API: one policy ------------------------------------------------------------------

#: A page and the API endpoint that does the same, each as (method, url of the world).
SAME_THING = {
    "dataset list": (("get", lambda w: "/datasets/"), ("get", lambda w: "/api/datasets/")),
    "dataset detail": (
        ("get", lambda w: "/datasets/toy/"),
        ("get", lambda w: "/api/datasets/toy/"),
    ),
    "import": (("get", lambda w: "/datasets/import/"), ("post", lambda w: "/api/datasets/import/")),
    "case": (
        ("get", lambda w: f"/cases/{w.visible_case.pk}/"),
        ("get", lambda w: f"/api/cases/{w.visible_case.pk}/"),
    ),
    "queue next": (
        ("post", lambda w: "/datasets/toy/queue/next/"),
        ("post", lambda w: "/api/datasets/toy/queue/next/"),
    ),
    "seeds": (
        ("get", lambda w: "/datasets/toy/seeds/"),
        ("get", lambda w: "/api/datasets/toy/seeds/"),
    ),
    "case explorer": (
        ("get", lambda w: "/datasets/toy/cases/"),
        ("get", lambda w: "/api/datasets/toy/cases/"),
    ),
    "iteration list": (
        ("get", lambda w: "/datasets/toy/iterations/"),
        ("get", lambda w: "/api/datasets/toy/iterations/"),
    ),
    "iteration launch": (
        ("get", lambda w: "/datasets/toy/iterations/new/"),
        ("post", lambda w: "/api/datasets/toy/iterations/"),
    ),
    "iteration detail": (
        ("get", lambda w: f"/datasets/toy/iterations/{w.iteration.number}/"),
        ("get", lambda w: f"/api/iterations/{w.iteration.pk}/"),
    ),
    "iteration cancel": (
        ("post", lambda w: f"/iterations/{w.running.pk}/cancel/"),
        ("post", lambda w: f"/api/iterations/{w.running.pk}/cancel/"),
    ),
    "iteration retry": (
        ("post", lambda w: f"/iterations/{w.failed.pk}/retry/"),
        ("post", lambda w: f"/api/iterations/{w.failed.pk}/retry/"),
    ),
    "model list": (
        ("get", lambda w: "/datasets/toy/models/"),
        ("get", lambda w: "/api/datasets/toy/models/"),
    ),
    "model detail": (
        ("get", lambda w: f"/models/{w.model_version.pk}/"),
        ("get", lambda w: f"/api/models/{w.model_version.pk}/"),
    ),
    "model promote": (
        ("post", lambda w: f"/models/{w.model_version.pk}/promote/"),
        ("post", lambda w: f"/api/models/{w.model_version.pk}/promote/"),
    ),
    "model download": (
        ("get", lambda w: f"/models/{w.model_version.pk}/download/"),
        ("get", lambda w: f"/api/models/{w.model_version.pk}/download/"),
    ),
    "model rules": (
        ("get", lambda w: f"/models/{w.model_version.pk}/rules/"),
        ("get", lambda w: f"/api/models/{w.model_version.pk}/rules/"),
    ),
}


def _refused(response) -> bool:
    to_login = response.status_code == 302 and "/accounts/login/" in response["Location"]
    return response.status_code in (401, 403) or to_login


@pytest.mark.parametrize("persona", ["admin", "expert", "outsider"])
def test_pages_and_api_allow_each_role_the_same(world, persona):
    """Experts read iterations and model versions on the pages: the API lets them too."""
    user = world.users[persona]
    page_client = Client()
    page_client.force_login(user)
    api_client = world.client(persona)
    verdicts = {}
    for thing, ((page_method, page_url), (api_method, api_url)) in SAME_THING.items():
        page = getattr(page_client, page_method)(page_url(world))
        api = getattr(api_client, api_method)(api_url(world), {}, format="json")
        verdicts[thing] = (not _refused(page), not _refused(api))
    differing = {thing: v for thing, v in verdicts.items() if v[0] != v[1]}
    assert not differing, f"(page allowed, API allowed) differ for {persona}: {differing}"
    if persona == "expert":
        for thing in ("iteration list", "iteration detail", "model list", "model detail"):
            assert verdicts[thing] == (True, True), thing
        for thing in ("iteration launch", "model promote", "model download"):
            assert verdicts[thing] == (False, False), thing


def test_every_api_view_names_its_actions():
    from labelapp.api.permissions import PolicyPermission

    open_views = {"api-schema", "api-docs", "api-redoc", "api-token", "api-me", "api-not-found"}
    for pattern in get_resolver().url_patterns:
        if str(pattern.pattern) != "api/":
            continue
        for route in pattern.url_patterns:
            if route.name in open_views:
                continue
            view = route.callback.view_class
            assert view.permission_classes == [PolicyPermission], route.name
            methods = {m.upper() for m in view.http_method_names if hasattr(view, m)} - {"OPTIONS"}
            assert methods <= set(view.policy_actions), route.name
