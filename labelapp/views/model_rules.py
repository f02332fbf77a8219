"""A model version's readable rules (rule export, issue 17): read them, download as JSON."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from django.views.decorators.http import require_GET

from labelapp.models import ModelVersion
from labelapp.policy import Action, requires
from labelapp.services.rules import PRECISION_DEFINITION, RuleParams, RulesError, rules_export


@requires(Action.MODEL_VIEW)
@require_GET
def model_rules_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The rules page; ``?download=1`` answers the same rules as a JSON file."""
    version = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=pk)
    result, error, params = None, None, RuleParams()
    try:
        params = RuleParams.from_mapping(request.GET)
        result = rules_export(version=version, actor=request.user, via="page", params=params)
    except RulesError as exc:
        error = str(exc)
    if result is not None and request.GET.get("download"):
        response = HttpResponse(json.dumps(result, indent=2), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="rules-v{version.pk}.json"'
        return response
    return render(
        request,
        "labelapp/model_rules.html",
        {
            "version": version,
            "dataset": version.dataset,
            "result": result,
            "error": error,
            "params": params,
            "top_percent": f"{params.top_share:.2%}".replace(".00%", "%"),
            "form_values": {k: request.GET.get(k, getattr(params, k)) for k in RuleParams.HELP},
            "bounds": RuleParams.BOUNDS,
            "precision_definition": PRECISION_DEFINITION,
        },
    )


urlpatterns = [path("models/<int:pk>/rules/", model_rules_view, name="model-rules")]
