"""Labels: an expert's answers (create, undo, list) and the next case of their queue.

Writes go through :mod:`labelapp.services.labels` (the pool rule, conflicts, audit) with
``via="api"``; a client sends an ``idempotency_key`` to retry a submit safely.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.cases import CaseOutputSerializer, LabelBriefSerializer
from labelapp.api.errors import Conflict, error_responses
from labelapp.api.fields import MAX_ID, QuerySerializer
from labelapp.api.pagination import PAGE_PARAMETERS, paginate, paginated
from labelapp.api.permissions import PolicyPermission
from labelapp.models import Dataset, Label, PatternTag
from labelapp.policy import Action, cases_visible_to
from labelapp.roles import is_admin
from labelapp.selectors.case_lists import current_answer_subquery
from labelapp.selectors.checks import cases_shown_as_regular
from labelapp.services.labels import (
    LabelConflict,
    LabelNotAllowed,
    label_create_or_replay,
    label_undo,
)
from labelapp.services.queue import queue_next_case


class LabelOutputSerializer(LabelBriefSerializer):
    case = serializers.PrimaryKeyRelatedField(read_only=True)
    case_id = serializers.CharField(source="case.case_id", read_only=True)

    class Meta(LabelBriefSerializer.Meta):
        fields = [*LabelBriefSerializer.Meta.fields, "case", "case_id", "seconds_spent"]


class PatternField(serializers.SlugRelatedField):
    """A pattern tag by name; text the database cannot hold is invalid, not a server error."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)

    def run_validation(self, data=serializers.empty):
        if data == "":  # DRF reads "" as null for relations; the schema says a name or null
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().run_validation(data)


def labels_visible_to(user):
    labels = Label.objects.select_related("user", "pattern", "case").order_by("-created_at", "-id")
    return labels if is_admin(user) else labels.filter(user=user)


class LabelListCreateApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.LABEL, "POST": Action.LABEL}
    throttle_scope = "labels"

    @extend_schema_serializer(component_name="LabelFilter")
    class FilterSerializer(QuerySerializer):
        dataset = serializers.SlugField(required=False, help_text="Only this dataset's labels.")
        case = serializers.IntegerField(
            required=False, min_value=1, max_value=MAX_ID, help_text="Case id."
        )

    @extend_schema_serializer(component_name="LabelCreate")
    class InputSerializer(serializers.Serializer):
        case = serializers.IntegerField(
            min_value=1, max_value=MAX_ID, help_text="The case's id (not its case_id)."
        )
        answer = serializers.ChoiceField(
            choices=[Label.Answer.CONFIRMED, Label.Answer.NOT_CONFIRMED, Label.Answer.SKIPPED]
        )
        pattern = PatternField(
            slug_field="name",
            queryset=PatternTag.objects.all(),
            required=False,
            allow_null=True,
            help_text="A cash-out pattern tag (kept with a confirmed answer only).",
        )
        comment = serializers.CharField(required=False, allow_blank=True, max_length=5000)
        idempotency_key = serializers.CharField(
            required=False,
            max_length=100,
            help_text="Repeat a submit with the same key and get the first label back.",
        )
        seconds_spent = serializers.FloatField(
            required=False, min_value=0, max_value=86400, allow_null=True
        )

    @extend_schema(
        operation_id="labels_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={
            200: paginated(LabelOutputSerializer, "PaginatedLabelList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request) -> Response:
        """Labels, newest first: an expert's own; every label for an admin."""
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        labels = labels_visible_to(request.user)
        if "dataset" in filters.validated_data:
            labels = labels.filter(case__dataset__name=filters.validated_data["dataset"])
        if "case" in filters.validated_data:
            labels = labels.filter(case_id=filters.validated_data["case"])
        return paginate(request, self, labels, LabelOutputSerializer)

    @extend_schema(
        operation_id="labels_create",
        request=InputSerializer,
        responses={
            201: LabelOutputSerializer,
            200: OpenApiResponse(LabelOutputSerializer, description="Same idempotency key again."),
            **error_responses(400, 401, 403, 404, 409, 429),
        },
    )
    def post(self, request: Request) -> Response:
        """Answer a case you hold (confirmed / not_confirmed / skipped)."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        case = get_object_or_404(cases_visible_to(request.user), pk=fields.pop("case"))
        try:
            label, created = label_create_or_replay(
                user=request.user, case=case, via="api", **fields
            )
        except LabelConflict as exc:
            raise Conflict(str(exc)) from exc
        except ValueError as exc:
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from exc
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(LabelOutputSerializer(label).data, status=code)


class LabelUndoApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.LABEL}
    throttle_scope = "labels"

    @extend_schema(
        operation_id="labels_undo",
        request=None,
        responses={201: LabelOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Undo one of your recent answers (a new ``undone`` label; history is kept)."""
        label = get_object_or_404(labels_visible_to(request.user), pk=pk)
        try:
            undo = label_undo(user=request.user, label=label, via="api")
        except LabelNotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        except LabelConflict as exc:
            raise Conflict(str(exc)) from exc
        return Response(LabelOutputSerializer(undo).data, status=status.HTTP_201_CREATED)


class QueueNextApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.LABEL}

    @extend_schema(
        operation_id="queue_next",
        request=None,
        responses={
            200: CaseOutputSerializer,
            204: OpenApiResponse(description="Nothing left to label in the current batch."),
            **error_responses(401, 403, 404),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        """Lease the next case of the dataset's current batch to you (15 minutes)."""
        dataset = get_object_or_404(Dataset, name=name)
        item = queue_next_case(user=request.user, dataset=dataset)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        case = (
            cases_visible_to(request.user)
            .annotate(current_answer=current_answer_subquery())
            .select_related("dataset")
            .get(pk=item.case_id)
        )
        cases_shown_as_regular(request.user, [case])  # a hidden check looks like any case
        return Response(CaseOutputSerializer(case).data)
