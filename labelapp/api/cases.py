"""Cases: a dataset's cases with filters, and one case with its score, contributions and history."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import error_responses
from labelapp.api.fields import MAX_ID, FiniteFloatField, QuerySerializer
from labelapp.api.pagination import PAGE_PARAMETERS, paginate, paginated
from labelapp.api.permissions import PolicyPermission
from labelapp.models import BatchItem, Case, Dataset, Label, PoolState
from labelapp.policy import Action
from labelapp.selectors.case_lists import NO_ANSWER, case_detail_queryset, case_list
from labelapp.selectors.cases import case_batch_item, score_contributions
from labelapp.selectors.checks import cases_shown_as_regular, labels_shown_with
from learning.expressions import ExpressionError

ANSWER_CHOICES = [
    Label.Answer.CONFIRMED,
    Label.Answer.NOT_CONFIRMED,
    Label.Answer.SKIPPED,
    NO_ANSWER,
]
ORDERINGS = ["row", "-row", "score", "-score", "case_id", "-case_id"]


class CommaSeparatedChoiceField(serializers.ListField):
    """``?pool_state=U,shown`` or ``?pool_state=U&pool_state=shown``."""

    def __init__(self, choices, **kwargs):
        super().__init__(child=serializers.ChoiceField(choices=choices), **kwargs)

    def get_value(self, dictionary):
        if self.field_name not in dictionary:
            return serializers.empty
        values = dictionary.getlist(self.field_name) if hasattr(dictionary, "getlist") else []
        return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


class CaseOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    current_answer = serializers.CharField(
        allow_null=True, read_only=True, help_text="The standing answer (latest not undone)."
    )
    score = serializers.FloatField(
        allow_null=True, read_only=True, help_text="The shown model version's score."
    )
    score_percentile = serializers.FloatField(
        allow_null=True,
        read_only=True,
        help_text="Share (0-100] of the dataset's cases scoring at most this.",
    )

    class Meta:
        model = Case
        fields = [
            "id",
            "dataset",
            "row",
            "case_id",
            "entity_id",
            "ts",
            "seed_positive",
            "pool_state",
            "score",
            "score_percentile",
            "current_answer",
        ]


class LabelBriefSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    pattern = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)

    class Meta:
        model = Label
        fields = [
            "id",
            "user",
            "answer",
            "previous_answer",
            "undoes",
            "pattern",
            "comment",
            "via",
            "review_round",
            "created_at",
        ]


class BatchItemBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = BatchItem
        fields = [
            "id",
            "iteration",
            "position",
            "score",
            "uncertainty",
            "cluster",
            "rank_in_cluster",
            "reason",
            "status",
        ]


class ContributionSerializer(serializers.Serializer):
    feature = serializers.CharField()
    contribution = serializers.FloatField(help_text="SHAP contribution to the raw score.")


class CaseDetailBaseSerializer(CaseOutputSerializer):
    features = serializers.JSONField()
    labels = LabelBriefSerializer(many=True, read_only=True)
    batch_items = BatchItemBriefSerializer(many=True, read_only=True)

    class Meta(CaseOutputSerializer.Meta):
        fields = [*CaseOutputSerializer.Meta.fields, "features", "labels", "batch_items"]


class CaseListApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.CASE_VIEW}

    @extend_schema_serializer(component_name="CaseFilter")
    class FilterSerializer(QuerySerializer):
        pool_state = CommaSeparatedChoiceField(
            choices=PoolState.choices, required=False, help_text="One or more pool states."
        )
        score_min = FiniteFloatField(required=False)
        score_max = FiniteFloatField(required=False)
        answer = CommaSeparatedChoiceField(
            choices=ANSWER_CHOICES,
            required=False,
            help_text="Standing answer(s); `none` for cases without one.",
        )
        iteration = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=MAX_ID,
            help_text="Cases selected into this iteration's batch.",
        )
        where = serializers.CharField(
            required=False,
            max_length=2000,
            help_text='A condition over the case columns, e.g. "amount > 220 and is_night == 1" '
            "(the seed rules' expression language).",
        )
        search = serializers.CharField(
            required=False, max_length=200, help_text="A case id or an entity id, exactly."
        )
        ordering = serializers.ChoiceField(choices=ORDERINGS, required=False, default="row")

        def validate(self, attrs):
            low, high = attrs.get("score_min"), attrs.get("score_max")
            if low is not None and high is not None and low > high:
                raise serializers.ValidationError({"score_min": "must not exceed score_max"})
            return attrs

    @extend_schema(
        operation_id="cases_list",
        parameters=[FilterSerializer, *PAGE_PARAMETERS],
        responses={
            200: paginated(CaseOutputSerializer, "PaginatedCaseList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        """The dataset's cases you may see (admins: all; experts: their queue and labels)."""
        dataset = get_object_or_404(Dataset, name=name)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        try:
            cases = case_list(user=request.user, dataset=dataset, **filters.validated_data)
        except ExpressionError as exc:
            raise serializers.ValidationError({"where": [str(exc)]}) from exc
        return paginate(
            request,
            self,
            cases.select_related("dataset"),
            CaseOutputSerializer,
            prepare=lambda page: cases_shown_as_regular(request.user, page),
        )


class CaseDetailApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.CASE_VIEW}

    @extend_schema_serializer(component_name="CaseDetail")
    class OutputSerializer(CaseDetailBaseSerializer):
        labels = LabelBriefSerializer(many=True, read_only=True, source="shown_labels")
        model_version = serializers.IntegerField(
            allow_null=True, help_text="The dataset's current model, which the score is from."
        )
        base_value = serializers.FloatField(
            allow_null=True, help_text="The model's expected raw score (log-odds)."
        )
        contributions = ContributionSerializer(
            many=True, help_text="Features by absolute contribution, largest first."
        )
        explanation_error = serializers.CharField(
            allow_null=True, help_text="Why there are no contributions, if there are none."
        )

        class Meta(CaseDetailBaseSerializer.Meta):
            fields = [
                *CaseDetailBaseSerializer.Meta.fields,
                "model_version",
                "base_value",
                "contributions",
                "explanation_error",
            ]

    @extend_schema(
        operation_id="cases_retrieve",
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        """One case: features, score, the features that drove it, labels and batch history."""
        case = get_object_or_404(case_detail_queryset(request.user), pk=pk)
        case.shown_labels = labels_shown_with(
            request.user, case.labels.all(), case_batch_item(case)
        )
        cases_shown_as_regular(request.user, [case])  # a hidden check looks like any case
        explained = score_contributions(case)
        case.model_version = explained.model.pk if explained.model else None
        case.base_value = explained.base_value
        case.contributions = [{"feature": n, "contribution": v} for n, v in explained.rows]
        case.explanation_error = explained.unavailable or None
        return Response(self.OutputSerializer(case).data)
