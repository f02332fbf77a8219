"""Model version pages: list, detail with lineage, compare two, promote and roll back (admins)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from labelapp.models import Dataset, ModelVersion
from labelapp.policy import Action, requires
from labelapp.selectors.iterations import (
    model_version_compare,
    model_version_lineage,
    model_version_list,
)
from labelapp.services.model_versions import (
    ModelVersionError,
    model_version_promote,
    model_version_rollback,
    previous_current_version,
)
from labelapp.views.case_map import case_map_context


@requires(Action.MODEL_VIEW)
def model_list_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    versions = model_version_list(dataset)
    return render(
        request,
        "labelapp/model_list.html",
        {
            "dataset": dataset,
            "versions": versions,
            "current_id": dataset.current_model_id,
            # Offered only when there is a version to go back to (not with a single version).
            "rollback_to": previous_current_version(dataset) if dataset.current_model_id else None,
        },
    )


@requires(Action.MODEL_VIEW)
def model_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(
        ModelVersion.objects.select_related("dataset", "iteration", "parent"), pk=pk
    )
    return render(
        request,
        "labelapp/model_detail.html",
        {
            "version": version,
            "dataset": version.dataset,
            "is_current": version.dataset.current_model_id == version.pk,
            "lineage": model_version_lineage(version),
            **case_map_context(version),
        },
    )


@requires(Action.MODEL_VIEW)
def model_compare_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    versions = list(model_version_list(dataset))
    try:
        a_id = int(request.GET.get("a") or 0)
        b_id = int(request.GET.get("b") or 0)
    except ValueError as exc:
        raise Http404("model versions are given by number") from exc
    by_id = {v.pk: v for v in versions}
    a, b = by_id.get(a_id), by_id.get(b_id)
    if (a_id and a is None) or (b_id and b is None):
        raise Http404("no such model version of this dataset")
    return render(
        request,
        "labelapp/model_compare.html",
        {
            "dataset": dataset,
            "versions": versions,
            "a": a,
            "b": b,
            "comparison": model_version_compare(a, b) if a and b else None,
        },
    )


@requires(Action.MODEL_MANAGE)
@require_POST
def model_promote_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=pk)
    try:
        model_version_promote(version=version, user=request.user)
    except ModelVersionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Model version {version.pk} is now current.")
    return redirect("model-list", name=version.dataset.name)


@requires(Action.MODEL_MANAGE)
@require_POST
def model_rollback_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    try:
        version = model_version_rollback(dataset=dataset, user=request.user)
    except ModelVersionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Rolled back: model version {version.pk} is current again.")
    return redirect("model-list", name=dataset.name)


urlpatterns = [
    path("datasets/<slug:name>/models/", model_list_view, name="model-list"),
    path("datasets/<slug:name>/models/compare/", model_compare_view, name="model-compare"),
    path("datasets/<slug:name>/models/rollback/", model_rollback_view, name="model-rollback"),
    path("models/<int:pk>/", model_detail_view, name="model-detail"),
    path("models/<int:pk>/promote/", model_promote_view, name="model-promote"),
]
