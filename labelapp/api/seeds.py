"""Seed positives: preview and apply a change (a rule, case ids or one case), list changes, undo.

The same rules, preview and audit trail as the Seeds page (:mod:`labelapp.selectors.seeds`).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import Conflict, error_responses
from labelapp.api.fields import MAX_ID, StrictBooleanField
from labelapp.api.pagination import PAGE_PARAMETERS, paginate, paginated
from labelapp.api.permissions import PolicyPermission
from labelapp.models import AuditEvent, Dataset
from labelapp.policy import Action
from labelapp.selectors.seeds import (
    MAX_SEED_CHANGE,
    SEED_VERBS,
    SeedSource,
    SeedSourceError,
    seed_preview,
)
from labelapp.services.seeds import SeedUndoError, seeds_apply, seeds_undo


@extend_schema_serializer(component_name="SeedChangeRequest")
class SeedRequestSerializer(serializers.Serializer):
    rule = serializers.CharField(
        required=False, max_length=2000, help_text='A condition, e.g. "amount > 220".'
    )
    case_ids = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=MAX_SEED_CHANGE,
        help_text="Case ids (the dataset's case_id); any unknown id refuses the whole change.",
    )
    case = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="One case (its API id)."
    )
    remove = StrictBooleanField(required=False, default=False, help_text="Unmark instead.")

    def validate(self, attrs):
        given = [k for k in ("rule", "case_ids", "case") if attrs.get(k) not in (None, "", [])]
        if len(given) != 1:
            raise serializers.ValidationError("give exactly one of rule, case_ids or case")
        return attrs

    def seed_source(self) -> SeedSource:
        data = self.validated_data
        return SeedSource(
            rule=data.get("rule", ""),
            case_ids=tuple(data.get("case_ids") or ()),
            case_pk=data.get("case"),
        )


class CaseBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    case_id = serializers.CharField()
    pool_state = serializers.CharField()
    score = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="SeedPreview")
class SeedPreviewSerializer(serializers.Serializer):
    remove = serializers.BooleanField()
    n_matched = serializers.IntegerField(help_text="Cases the rule or list names.")
    n_change = serializers.IntegerField(help_text="Cases that would change.")
    n_already = serializers.IntegerField(help_text="Already seeds (or, unmarking, not seeds).")
    not_changed = serializers.DictField(
        child=serializers.IntegerField(), help_text="Cases left alone, by reason."
    )
    n_seeds_now = serializers.IntegerField()
    n_seeds_after = serializers.IntegerField()
    sample = CaseBriefSerializer(many=True)


@extend_schema_serializer(component_name="SeedChange")
class SeedChangeSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    undone_by = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "verb", "actor", "via", "created_at", "data", "undone_by"]

    def get_undone_by(self, event: AuditEvent) -> int | None:
        undo = AuditEvent.objects.filter(
            verb="seeds.undo", target_type="AuditEvent", target_id=str(event.pk)
        ).first()
        return undo.pk if undo else None


def _bad_source(exc: ValueError) -> serializers.ValidationError:
    errors: dict = {"non_field_errors": [str(exc)]}
    if isinstance(exc, SeedSourceError) and exc.unknown_ids:
        errors["unknown_ids"] = exc.unknown_ids[:1000]
    return serializers.ValidationError(errors)


class SeedPreviewApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.SEEDS_MANAGE}

    @extend_schema(
        operation_id="seeds_preview",
        request=SeedRequestSerializer,
        responses={200: SeedPreviewSerializer, **error_responses(400, 401, 403, 404)},
    )
    def post(self, request: Request, name: str) -> Response:
        """What marking (or unmarking) these cases would change; changes nothing."""
        dataset = get_object_or_404(Dataset, name=name)
        body = SeedRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            preview = seed_preview(
                dataset, body.seed_source(), remove=body.validated_data["remove"]
            )
        except ValueError as exc:
            raise _bad_source(exc) from exc
        return Response(SeedPreviewSerializer(preview).data)


class SeedListApplyApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.SEEDS_MANAGE, "POST": Action.SEEDS_MANAGE}

    @extend_schema(
        operation_id="seeds_changes_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(SeedChangeSerializer, "PaginatedSeedChangeList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        """The dataset's seed changes, newest first (each with the cases it changed)."""
        dataset = get_object_or_404(Dataset, name=name)
        events = AuditEvent.objects.filter(dataset=dataset, verb__in=SEED_VERBS).order_by(
            "-created_at", "-id"
        )
        return paginate(request, self, events.select_related("actor"), SeedChangeSerializer)

    @extend_schema(
        operation_id="seeds_apply",
        request=SeedRequestSerializer,
        responses={
            200: SeedChangeSerializer,
            204: OpenApiResponse(
                description="Nothing to change: every matched case is already as asked (or "
                "keeps an expert's answer); no change was recorded."
            ),
            **error_responses(400, 401, 403, 404),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        """Mark (or unmark) the cases, all or nothing; returns the change (undo it by its id).
        With nothing to change: 204 and no body (preview first to see why)."""
        dataset = get_object_or_404(Dataset, name=name)
        body = SeedRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            result = seeds_apply(
                dataset=dataset,
                source=body.seed_source(),
                user=request.user,
                remove=body.validated_data["remove"],
                via="api",
            )
        except ValueError as exc:
            raise _bad_source(exc) from exc
        if result.event is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(SeedChangeSerializer(result.event).data)


class SeedUndoApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.SEEDS_MANAGE}

    @extend_schema(
        operation_id="seeds_undo",
        request=None,
        responses={200: SeedChangeSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Undo a seed change: its cases get their previous state back (those changed since are
        left as they are and listed in ``data.changed_since``)."""
        event = get_object_or_404(AuditEvent, pk=pk, verb__in=SEED_VERBS)
        try:
            undo = seeds_undo(event=event, user=request.user, via="api")
        except SeedUndoError as exc:
            raise Conflict(str(exc)) from exc
        return Response(SeedChangeSerializer(undo).data)
