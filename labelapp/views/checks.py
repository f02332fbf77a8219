"""The admin's setting of hidden checks of expert recall (a form on the dataset page)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.views.decorators.http import require_POST

from labelapp.models import Dataset
from labelapp.policy import Action, requires
from labelapp.services.checks import HiddenCheckShareError, dataset_hidden_check_share_set


@requires(Action.ITERATION_RUN)
@require_POST
def dataset_hidden_checks_view(request: HttpRequest, name: str) -> HttpResponse:
    """Set the share of each future batch given to hidden checks, typed as a percent."""
    dataset = get_object_or_404(Dataset, name=name)
    typed = request.POST.get("percent", "").strip()
    try:
        dataset = dataset_hidden_check_share_set(
            user=request.user, dataset=dataset, share=f"{typed}%" if typed else ""
        )
    except HiddenCheckShareError as exc:
        messages.error(request, f"Hidden checks not changed: {exc}")
    else:
        share = dataset.hidden_check_share
        messages.success(
            request,
            f"Hidden checks: {share:.0%} of each new batch." if share else "Hidden checks: off.",
        )
    return redirect("dataset-detail", name=dataset.name)


urlpatterns = [
    path(
        "datasets/<slug:name>/hidden-checks/",
        dataset_hidden_checks_view,
        name="dataset-hidden-checks",
    ),
]
