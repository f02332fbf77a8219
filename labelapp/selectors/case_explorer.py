"""The case explorer's reads: a dataset's cases filtered and sorted, one keyset page at a time.

Pages never use OFFSET: a page ends with a cursor, the sort key of its last row, ``(score, id)``
or ``(ts, id)``, and the next page starts strictly after it, so page 1,000 costs what page 1 does
(an index range scan on ``(dataset, score DESC NULLS LAST, id DESC)`` or its ``ts`` twin, added
by migration 0005). Cases without a score (or a time) come last.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import F, Q, QuerySet

from labelapp.models import Case, Dataset
from labelapp.policy import cases_visible_to
from labelapp.selectors.case_expressions import case_expression_filter, case_expression_parse
from labelapp.selectors.case_lists import pool_state_filter
from labelapp.selectors.checks import cases_shown_as_regular

PAGE_SIZE = 50
SORTS = {"score": "score", "time": "ts"}
#: How long the ordered index walk may look for a page's rows before the planner's own plan
#: runs instead (PostgreSQL; see :func:`_rows_in_order`).
WALK_BUDGET_MS = 50
_QUERY_CANCELED = "57014"
#: Filters whose walk ran past its budget (per process, the most recent few hundred).
_WALK_TOO_SLOW: OrderedDict[Hashable, bool] = OrderedDict()
_WALK_MEMORY = 512


class ExplorerError(ValueError):
    """A filter that cannot be used (a bad expression, a broken cursor); says which."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(message)


@dataclass(frozen=True)
class ExplorerFilters:
    search: str = ""  # a case id or an entity id, exactly
    pool_states: tuple[str, ...] = ()
    score_min: float | None = None
    score_max: float | None = None
    where: str = ""  # a condition in the expression language
    sort: str = "score"  # "score" (highest first) or "time" (newest first)


@dataclass
class ExplorerPage:
    cases: list[Case] = field(default_factory=list)
    next_cursor: str | None = None


def explorer_cases(user: Any, dataset: Dataset, filters: ExplorerFilters) -> QuerySet[Case]:
    """The filtered cases ``user`` may see, in the explorer's order (no page cut yet).

    Raises
    ------
    ExplorerError
        For ``where`` outside the expression language (the message says where and why).
    """
    if filters.sort not in SORTS:
        raise ExplorerError("sort", f"sort by one of {', '.join(SORTS)}")
    cases = cases_visible_to(user, dataset.cases.with_shown_scores(dataset))
    if filters.search:
        cases = cases.filter(Q(case_id=filters.search) | Q(entity_id=filters.search))
    if filters.pool_states:
        # For an expert, a hidden check counts in the state it is shown in, never as a seed.
        cases = cases.filter(pool_state_filter(user, cases, list(filters.pool_states)))
    if filters.score_min is not None:
        cases = cases.filter(score__gte=filters.score_min)
    if filters.score_max is not None:
        cases = cases.filter(score__lte=filters.score_max)
    if filters.where.strip():
        try:
            expression = case_expression_parse(dataset, filters.where)
        except ValueError as exc:
            raise ExplorerError("where", str(exc)) from exc
        cases = cases.filter(case_expression_filter(dataset, expression))
    key = SORTS[filters.sort]
    return cases.order_by(F(key).desc(nulls_last=True), F("id").desc())


def explorer_page(
    user: Any,
    dataset: Dataset,
    filters: ExplorerFilters,
    *,
    cursor: str | None = None,
    page_size: int = PAGE_SIZE,
) -> ExplorerPage:
    """One page of :func:`explorer_cases`, starting after ``cursor`` (None: the first page).

    Two range scans rather than one OR: the rows with a sort value after the cursor
    (``key <= v AND (key < v OR id < pk)``, whose first half bounds the index scan), then, once
    those run out, the rows without one (``key IS NULL AND id < pk``).
    """
    cases = explorer_cases(user, dataset, filters).defer("features")
    key = SORTS[filters.sort]
    value, pk = _cursor_decode(cursor, key) if cursor else (None, None)
    in_null_zone = cursor is not None and value is None
    rows: list[Case] = []
    if not in_null_zone:
        valued = cases.filter(**{f"{key}__isnull": False})
        if cursor:
            valued = valued.filter(
                Q(**{f"{key}__lte": value}) & (Q(**{f"{key}__lt": value}) | Q(id__lt=pk))
            )
        rows = _rows_in_order(
            valued, page_size + 1, key=(dataset.pk, dataset.scores_model_id, user.pk, filters)
        )
    if len(rows) <= page_size:
        unvalued = cases.filter(**{f"{key}__isnull": True})
        if in_null_zone:
            unvalued = unvalued.filter(id__lt=pk)
        rows += list(unvalued[: page_size + 1 - len(rows)])
    page = ExplorerPage(cases=rows[:page_size])
    if len(rows) > page_size:
        last = page.cases[-1]
        page.next_cursor = _cursor_encode(getattr(last, key), last.pk)
    cases_shown_as_regular(user, page.cases)  # after the cursor: it reads the true sort key
    return page


def _rows_in_order(cases: QuerySet[Case], limit: int, *, key: Hashable = None) -> list[Case]:
    """The first ``limit`` rows of ``cases``, walking the sort key's index where that is fast.

    With a filter (a pool state, a condition) PostgreSQL estimates its matches spread evenly
    over the scores and often prefers fetching every match and sorting them: at 11.7M cases,
    200 ms for a page of seeds that the ordered walk finds in 10 ms (seeds score high). Where
    the matches are rare in the walk's order the walk is slow instead, so it runs first with a
    budget of :data:`WALK_BUDGET_MS`; past it the planner's own plan answers, and the next
    pages of the same filters (``key``) go to the planner directly.
    """
    if connection.vendor != "postgresql" or (key is not None and key in _WALK_TOO_SLOW):
        return list(cases[:limit])
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"SET LOCAL statement_timeout = {int(WALK_BUDGET_MS)}")
            rows = list(cases[:limit])
            cursor.execute("SET LOCAL statement_timeout TO DEFAULT")
            cursor.execute("SET LOCAL enable_sort TO DEFAULT")
        return rows
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _QUERY_CANCELED:
            raise
    if key is not None:
        _WALK_TOO_SLOW[key] = True
        while len(_WALK_TOO_SLOW) > _WALK_MEMORY:
            _WALK_TOO_SLOW.popitem(last=False)
    return list(cases[:limit])


def _cursor_encode(value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    raw = json.dumps([value, pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str, key: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, pk = json.loads(raw)
        if not isinstance(pk, int) or isinstance(pk, bool):
            raise ValueError("bad id")
        if value is not None:
            value = datetime.fromisoformat(value) if key == "ts" else float(value)
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ExplorerError(
            "cursor", "this page link is broken: start from the first page"
        ) from exc
    return value, pk
