"""The case explorer: filters, keyset pages (no OFFSET) that cover every case once, the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labelapp.models import Case, PoolState
from labelapp.selectors.case_explorer import (
    ExplorerError,
    ExplorerFilters,
    explorer_cases,
    explorer_page,
)
from tests.labelapp.factories import T0, make_batch, make_dataset, shown_scores_create


@pytest.fixture
def toy(db):
    """30 cases; ties in score (pairs share one), three without a time."""
    dataset = make_dataset(n_cases=30, n_seed=3)
    shown_scores_create(dataset, [round((i // 2) / 15, 4) for i in range(30)])
    for case in Case.objects.filter(dataset=dataset):
        i = case.row
        case.ts = None if i % 10 == 3 else T0 + timedelta(hours=(i * 7) % 30)
        case.save(update_fields=["ts"])
    return dataset


def walk(user, dataset, filters, page_size=4):
    cursor, seen, pages = None, [], 0
    while True:
        page = explorer_page(user, dataset, filters, cursor=cursor, page_size=page_size)
        seen += [c.case_id for c in page.cases]
        pages += 1
        if page.next_cursor is None:
            return seen, pages
        cursor = page.next_cursor


@pytest.mark.parametrize(
    "filters",
    [
        ExplorerFilters(),
        ExplorerFilters(sort="time"),
        ExplorerFilters(where="amount > 100 or customer_nb_tx_7d == 3"),
        ExplorerFilters(pool_states=(PoolState.POSITIVE, PoolState.UNLABELED), score_min=0.2),
        ExplorerFilters(score_max=0.5, sort="time"),
        ExplorerFilters(search="e2"),
    ],
)
def test_pages_cover_every_match_once_in_order(toy, admin_user, filters):
    expected = [c.case_id for c in explorer_cases(admin_user, toy, filters)]
    seen, pages = walk(admin_user, toy, filters)
    assert seen == expected and len(set(seen)) == len(seen)
    assert pages == max(1, -(-len(expected) // 4))
    key = "score" if filters.sort == "score" else "ts"
    values = [getattr(c, key) for c in explorer_cases(admin_user, toy, filters)]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[len(present) :] == [None] * (len(values) - len(present))  # missing last


def test_without_a_model_the_score_sort_pages_every_case_in_id_order(db, admin_user):
    dataset = make_dataset(n_cases=9, n_seed=1)
    seen, pages = walk(admin_user, dataset, ExplorerFilters())
    assert seen == [f"c{i:04d}" for i in reversed(range(9))] and pages == 3


def test_filters(toy, admin_user):
    def ids(**kwargs):
        return {c.case_id for c in explorer_cases(admin_user, toy, ExplorerFilters(**kwargs))}

    assert ids(search="c0007") == {"c0007"}
    assert ids(search="e1") == {f"c{i:04d}" for i in range(30) if i % 5 == 1}
    assert ids(pool_states=(PoolState.POSITIVE,)) == {"c0000", "c0001", "c0002"}
    assert ids(where="amount >= 200") == {f"c{i:04d}" for i in range(30) if 10 + 7.5 * i >= 200}
    assert all(
        0.2 <= c.score <= 0.4
        for c in explorer_cases(admin_user, toy, ExplorerFilters(score_min=0.2, score_max=0.4))
    )
    with pytest.raises(ExplorerError, match="unknown column"):
        ids(where="amout > 1")
    with pytest.raises(ExplorerError, match="broken"):
        explorer_page(admin_user, toy, ExplorerFilters(), cursor="not-a-cursor")


def test_no_offset_and_a_constant_number_of_queries(toy, admin_user):
    first = explorer_page(admin_user, toy, ExplorerFilters(), page_size=4)
    with CaptureQueriesContext(connection) as queries:
        explorer_page(admin_user, toy, ExplorerFilters(), cursor=first.next_cursor, page_size=4)
    # One SELECT (on PostgreSQL inside a savepoint with its planner settings: the walk's budget)
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert len(selects) == 1
    assert all("OFFSET" not in sql.upper() for sql in selects)


def test_experts_see_only_their_cases(toy, expert_user):
    items = make_batch(toy, size=3)
    for item in items:
        item.assigned_to = expert_user
        item.save()
    seen, _ = walk(expert_user, toy, ExplorerFilters())
    assert set(seen) == {item.case.case_id for item in items}


def test_page(toy, admin_client):
    url = reverse("case-explorer", args=["toy"])
    page = admin_client.get(url, {"where": "amount > 200", "sort": "time"}).content.decode()
    assert 'data-case="c0029"' in page and 'data-case="c0010"' not in page
    assert reverse("case-detail", args=[Case.objects.get(case_id="c0029").pk]) in page
    bad = admin_client.get(url, {"where": "amount.x > 1"}).content.decode()
    assert "at position 7: attribute access" in bad
    assert "must be a number" in admin_client.get(url, {"score_min": "nan"}).content.decode()
    full = admin_client.get(url).content.decode()
    assert 'id="next-page"' not in full  # 30 cases fit a page of 50
    detail = admin_client.get(reverse("dataset-detail", args=["toy"])).content.decode()
    assert url in detail and reverse("seeds", args=["toy"]) in detail


def test_api_list_filters(toy, admin_client):
    url = reverse("api-case-list", args=["toy"])
    body = admin_client.get(url, {"where": "amount > 200 and customer_nb_tx_7d != 0"}).json()
    assert {c["case_id"] for c in body["results"]} == {
        f"c{i:04d}" for i in range(30) if 10 + 7.5 * i > 200 and i % 7 != 0
    }
    assert admin_client.get(url, {"search": "c0004"}).json()["count"] == 1
    bad = admin_client.get(url, {"where": "open('x')"})
    assert bad.status_code == 400 and "function calls" in bad.json()["errors"]["where"][0]


def test_an_expert_cannot_tell_a_hidden_check_apart(toy, expert_user):
    from labelapp.models import BatchItem

    items = make_batch(toy, size=2)
    seed = Case.objects.get(case_id="c0000")  # a seed positive, hidden in the batch as a check
    BatchItem.objects.create(
        iteration=items[0].iteration, case=seed, position=5, is_check=True, assigned_to=expert_user
    )
    for item in items:
        item.assigned_to = expert_user
        item.save()
    shown = explorer_page(expert_user, toy, ExplorerFilters()).cases
    check = next(c for c in shown if c.case_id == "c0000")
    assert check.pool_state == PoolState.SHOWN and not check.seed_positive
    seeds_only = ExplorerFilters(pool_states=(PoolState.POSITIVE,))
    assert explorer_page(expert_user, toy, seeds_only).cases == []
    in_batch = ExplorerFilters(pool_states=(PoolState.SHOWN,))
    assert "c0000" in {c.case_id for c in explorer_page(expert_user, toy, in_batch).cases}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the walk's budget is PostgreSQL's")
def test_a_walk_past_its_budget_falls_back_to_the_planner_and_leaves_no_setting(toy, monkeypatch):
    from django.db.models.expressions import RawSQL

    from labelapp.selectors import case_explorer

    ordered = toy.cases.order_by("-row")
    assert [c.row for c in case_explorer._rows_in_order(ordered, 3)] == [29, 28, 27]
    monkeypatch.setattr(case_explorer, "WALK_BUDGET_MS", 5)
    slow = ordered.annotate(nap=RawSQL("pg_sleep(0.01)::text", ())).filter(nap="")
    assert [c.row for c in case_explorer._rows_in_order(slow, 2)] == [29, 28]  # canceled, redone
    # With a key (the page's filters), the next page of a filter whose walk was too slow goes to
    # the planner at once: no planner settings, no budget.
    assert [c.row for c in case_explorer._rows_in_order(slow, 2, key="slow")] == [29, 28]
    with CaptureQueriesContext(connection) as queries:
        assert [c.row for c in case_explorer._rows_in_order(slow, 2, key="slow")] == [29, 28]
    assert [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SET")] == []
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
        cursor.execute("SHOW enable_sort")
        assert cursor.fetchone()[0] == "on"
