"""Iterations: launch one (embed, train, score, select in a worker), watch, cancel, retry."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import Conflict, error_responses
from labelapp.api.fields import SettingField, StrictBooleanField
from labelapp.api.pagination import PAGE_PARAMETERS, paginate, paginated
from labelapp.api.permissions import PolicyPermission
from labelapp.models import Dataset, Iteration
from labelapp.policy import Action
from labelapp.selectors.iterations import iteration_list, iteration_progress
from labelapp.services.iterations import (
    PARAM_SPECS,
    IterationAlreadyActive,
    IterationParamsError,
    iteration_cancel,
    iteration_launch,
    iteration_retry,
)


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True, help_text="Of the current stage.")
    elapsed_seconds = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Of the current stage.")


class IterationOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    launched_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Iteration
        fields = [
            "id",
            "dataset",
            "number",
            "status",
            "stage",
            "progress",
            "params",
            "error",
            "model_version",
            "retry_of",
            "launched_by",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, iteration: Iteration) -> dict:
        progress = iteration_progress(iteration)
        return {
            "done": iteration.progress_done,
            "total": iteration.progress_total,
            "percent": progress.percent,
            "elapsed_seconds": progress.elapsed_s,
            "eta_seconds": progress.eta_s,
        }


class IterationDetailOutputSerializer(IterationOutputSerializer):
    class Meta(IterationOutputSerializer.Meta):
        fields = [*IterationOutputSerializer.Meta.fields, "metrics", "log"]


def _params_serializer() -> type[serializers.Serializer]:
    """Launch parameters, one optional field per parameter the service knows (for the schema).

    The service validates them (ranges, cross-field rules); these fields only type them.
    """
    kinds = {int: serializers.IntegerField, float: serializers.FloatField}
    fields = {}
    for spec in PARAM_SPECS:
        if spec.choices:
            fields[spec.name] = SettingField(
                choices=list(spec.choices),
                required=False,
                help_text=f"{spec.help} Default {spec.default}.",
            )
        elif spec.kind is bool:
            fields[spec.name] = StrictBooleanField(
                required=False, help_text=f"{spec.help} Default {spec.default}."
            )
        else:
            fields[spec.name] = kinds[spec.kind](
                required=False,
                help_text=f"{spec.help} Default {spec.default}.",
                min_value=spec.minimum,
                max_value=spec.maximum,
            )
    return type("IterationLaunchSerializer", (serializers.Serializer,), fields)


IterationLaunchSerializer = extend_schema_serializer(component_name="IterationLaunch")(
    _params_serializer()
)


def _active_conflict(exc: IterationAlreadyActive) -> Conflict:
    return Conflict(str(exc))


class IterationListLaunchApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.ITERATION_VIEW, "POST": Action.ITERATION_RUN}

    @extend_schema(
        operation_id="iterations_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(IterationOutputSerializer, "PaginatedIterationList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        """The dataset's iterations, newest first."""
        dataset = get_object_or_404(Dataset, name=name)
        iterations = iteration_list(dataset).select_related("dataset", "launched_by")
        return paginate(request, self, iterations, IterationOutputSerializer)

    @extend_schema(
        operation_id="iterations_launch",
        request=IterationLaunchSerializer,
        responses={
            201: IterationDetailOutputSerializer,
            **error_responses(400, 401, 403, 404, 409),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        """Launch an iteration (one at a time per dataset); parameters default as on the page."""
        dataset = get_object_or_404(Dataset, name=name)
        data = IterationLaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            iteration = iteration_launch(
                dataset=dataset, user=request.user, params=dict(data.validated_data), via="api"
            )
        except IterationParamsError as exc:
            raise serializers.ValidationError(exc.errors) from exc
        except IterationAlreadyActive as exc:
            raise _active_conflict(exc) from exc
        return Response(IterationDetailOutputSerializer(iteration).data, status=201)


def _iteration_or_404(pk: int) -> Iteration:
    return get_object_or_404(Iteration.objects.select_related("dataset", "launched_by"), pk=pk)


class IterationDetailApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.ITERATION_VIEW}

    @extend_schema(
        operation_id="iterations_retrieve",
        responses={200: IterationDetailOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        """Status, stage and progress, the log, and the metrics once done."""
        return Response(IterationDetailOutputSerializer(_iteration_or_404(pk)).data)


class IterationCancelApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.ITERATION_RUN}

    @extend_schema(
        operation_id="iterations_cancel",
        request=None,
        responses={200: IterationDetailOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Cancel a queued or running iteration (the previous model stays in force)."""
        iteration = _iteration_or_404(pk)
        if not iteration_cancel(iteration=iteration, user=request.user, via="api"):
            raise Conflict(f"iteration {iteration.number} already ended ({iteration.status})")
        return Response(IterationDetailOutputSerializer(_iteration_or_404(pk)).data)


class IterationRetryApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.ITERATION_RUN}

    @extend_schema(
        operation_id="iterations_retry",
        request=None,
        responses={201: IterationDetailOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        """A new attempt of a failed or cancelled iteration, with the same parameters."""
        iteration = _iteration_or_404(pk)
        try:
            retry = iteration_retry(iteration=iteration, user=request.user, via="api")
        except IterationParamsError as exc:
            raise Conflict(str(exc)) from exc
        except IterationAlreadyActive as exc:
            raise _active_conflict(exc) from exc
        return Response(IterationDetailOutputSerializer(retry).data, status=201)
