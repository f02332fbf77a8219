"""The map of a model version's cases: its fragment (status, canvas), its JSON, (re)compute."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from labelapp.models import ModelVersion
from labelapp.policy import Action, requires
from labelapp.selectors.case_map import case_map_for, case_map_status, case_map_summary
from labelapp.services.case_map import case_map_request
from labelapp.workers import no_worker_message


def case_map_context(version: ModelVersion) -> dict:
    """What the map fragment shows: the map's summary, its computation's state, a worker notice."""
    status = case_map_status(version)
    active = bool(status and status.get("state") in ("queued", "running"))
    return {
        "version": version,
        "map": case_map_summary(version),
        "map_status": status,
        "map_active": active,
        "map_no_worker": no_worker_message() if active else None,
    }


@requires(Action.MODEL_VIEW)
def case_map_fragment_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The map card alone (the page polls it while the map is being computed)."""
    version = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=pk)
    return render(request, "labelapp/model_detail_map.html", case_map_context(version))


@requires(Action.MODEL_VIEW)
def case_map_data_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The computed map as JSON, with the URL pattern of a case page (``{pk}`` to fill in); an
    expert gets the ids of their own cases only (:func:`case_map_for`)."""
    version = get_object_or_404(ModelVersion, pk=pk)
    data = case_map_for(version, request.user)
    if data is None:
        return JsonResponse({"error": "the map of this version is not computed yet"}, status=404)
    data["case_url"] = reverse("case-detail", args=[0]).replace("/0/", "/{pk}/")
    return JsonResponse(data)


@requires(Action.MODEL_MANAGE)
@require_POST
def case_map_compute_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=pk)
    case_map_request(model_version=version, user=request.user)
    messages.success(request, f"The map of model v{version.pk} is queued for a worker.")
    return redirect(reverse("model-detail", args=[version.pk]) + "#case-map")


urlpatterns = [
    path("models/<int:pk>/map/", case_map_fragment_view, name="model-map"),
    path("models/<int:pk>/map.json", case_map_data_view, name="model-map-data"),
    path("models/<int:pk>/map/compute/", case_map_compute_view, name="model-map-compute"),
]
