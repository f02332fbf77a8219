"""The case explorer: find a dataset's cases by id, entity, pool state, score and column
conditions, sorted by score or time, a keyset page at a time."""

from __future__ import annotations

import math
import time

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path

from labelapp.models import Dataset, PoolState
from labelapp.policy import Action, requires
from labelapp.selectors.case_explorer import (
    PAGE_SIZE,
    SORTS,
    ExplorerError,
    ExplorerFilters,
    explorer_page,
)
from labelapp.selectors.case_expressions import dataset_columns
from labelapp.views.labeling import server_timing


def _float(request: HttpRequest, name: str, errors: dict[str, str]) -> float | None:
    text = request.GET.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        errors[name] = f"{name.replace('_', ' ')} must be a number"
        return None
    return value


def filters_from_request(request: HttpRequest) -> tuple[ExplorerFilters, dict[str, str]]:
    errors: dict[str, str] = {}
    states = tuple(s for s in request.GET.getlist("state") if s in PoolState.values)
    sort = request.GET.get("sort", "score")
    filters = ExplorerFilters(
        search=request.GET.get("q", "").strip(),
        pool_states=states,
        score_min=_float(request, "score_min", errors),
        score_max=_float(request, "score_max", errors),
        where=request.GET.get("where", "").strip(),
        sort=sort if sort in SORTS else "score",
    )
    return filters, errors


@server_timing
@requires(Action.CASE_VIEW)
def explorer_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    filters, errors = filters_from_request(request)
    page = None
    started = time.perf_counter()
    if not errors:
        try:
            page = explorer_page(
                request.user, dataset, filters, cursor=request.GET.get("cursor") or None
            )
        except ExplorerError as exc:
            errors[exc.field_name] = str(exc)
    query = request.GET.copy()
    query.pop("cursor", None)
    return render(
        request,
        "labelapp/case_explorer.html",
        {
            "dataset": dataset,
            "filters": filters,
            "errors": errors,
            "page": page,
            "page_size": PAGE_SIZE,
            "states": PoolState.choices,
            "columns": sorted(dataset_columns(dataset).items()),
            "query": query.urlencode(),
            "is_first_page": not request.GET.get("cursor"),
            "elapsed_ms": (time.perf_counter() - started) * 1000.0,
        },
    )


urlpatterns = [path("datasets/<slug:name>/cases/", explorer_view, name="case-explorer")]
