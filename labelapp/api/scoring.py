"""Scoring: POST raw cases (and their events) and get a chosen model version's scores back.

The cases are scored by :class:`learning.score.ScoringModel`, the code the export bundle's
standalone scorer runs, so the API, the app and the bundle agree.
"""

from __future__ import annotations

import math

import pandas as pd
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import Unprocessable, error_responses
from labelapp.api.fields import MAX_ID
from labelapp.api.permissions import PolicyPermission
from labelapp.models import Dataset, ModelVersion
from labelapp.policy import Action
from labelapp.selectors.model_scoring import CasesNotScorable, ModelUnavailable, score_cases

MAX_CASES_PER_REQUEST = 10_000
MAX_EVENTS_PER_REQUEST = 200_000


def _is_scalar(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {
            "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}],
            "nullable": True,
        },
    }
)
class RecordField(serializers.DictField):
    """One case or event: a flat JSON object of column -> scalar (string, number, bool, null)."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.JSONField(), **kwargs)

    def to_internal_value(self, data):
        record = super().to_internal_value(data)
        bad = sorted(key for key, value in record.items() if not _is_scalar(value))
        if bad:
            raise serializers.ValidationError(
                f"values must be strings, finite numbers, booleans or null: {', '.join(bad)}"
            )
        if "" in record:
            raise serializers.ValidationError("column names must not be empty")
        return record


class ScoreApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.MODEL_SCORE}
    throttle_scope = "scoring"

    @extend_schema_serializer(component_name="ScoreRequest")
    class InputSerializer(serializers.Serializer):
        model_version = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=MAX_ID,
            help_text="The model version to score with (default: the dataset's current model).",
        )
        dataset = serializers.SlugField(
            required=False, help_text="With no model_version: use this dataset's current model."
        )
        cases = serializers.ListField(
            child=RecordField(),
            min_length=1,
            max_length=MAX_CASES_PER_REQUEST,
            help_text="Raw cases in the dataset format: case_id, entity_id, ts, feature columns.",
        )
        events = serializers.ListField(
            child=RecordField(),
            required=False,
            max_length=MAX_EVENTS_PER_REQUEST,
            help_text="The cases' entities' events (entity_id, ts, fields), for sequence models.",
        )

        def validate(self, attrs):
            if "model_version" not in attrs and "dataset" not in attrs:
                raise serializers.ValidationError("give model_version or dataset")
            return attrs

    @extend_schema_serializer(component_name="ScoreResponse")
    class OutputSerializer(serializers.Serializer):
        model_version = serializers.IntegerField()
        scores = serializers.ListField(
            child=serializers.DictField(child=serializers.JSONField()),
            help_text="One {case_id, score} per case, in request order.",
        )

    @extend_schema(
        operation_id="score",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 401, 403, 404, 422, 429)},
    )
    def post(self, request: Request) -> Response:
        """Score raw cases with a model version, as the exported bundle would."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = _model_version(data.validated_data)
        cases = pd.DataFrame.from_records(data.validated_data["cases"])
        events_records = data.validated_data.get("events")
        events = pd.DataFrame.from_records(events_records) if events_records else None
        try:
            scores = score_cases(model_version=version, cases=cases, events=events)
        except CasesNotScorable as exc:
            raise serializers.ValidationError({"cases": [str(exc)]}) from exc
        except ModelUnavailable as exc:
            raise Unprocessable(str(exc)) from exc
        ids = cases["case_id"].tolist() if "case_id" in cases.columns else list(range(len(cases)))
        payload = {
            "model_version": version.pk,
            "scores": [{"case_id": i, "score": float(s)} for i, s in zip(ids, scores, strict=True)],
        }
        return Response(self.OutputSerializer(payload).data)


def _model_version(params: dict) -> ModelVersion:
    if "model_version" in params:
        return get_object_or_404(
            ModelVersion.objects.select_related("dataset"), pk=params["model_version"]
        )
    dataset = get_object_or_404(Dataset, name=params["dataset"])
    if dataset.current_model is None:
        raise serializers.ValidationError({"dataset": ["the dataset has no current model yet"]})
    return dataset.current_model
