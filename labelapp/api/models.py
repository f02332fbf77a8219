"""Model versions: list, detail, promote, and download as an export bundle."""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import Conflict, Unprocessable, error_responses
from labelapp.api.fields import QuerySerializer
from labelapp.api.pagination import PAGE_PARAMETERS, paginate, paginated
from labelapp.api.permissions import PolicyPermission
from labelapp.models import Dataset, ModelVersion
from labelapp.policy import Action
from labelapp.selectors.version_quality import version_quality
from labelapp.services.export import ExportError, model_version_export_file
from labelapp.services.model_versions import ModelVersionError, model_version_promote
from labelapp.services.rules import RuleParams, RulesError, rules_export
from labelapp.views.model_export import bundle_download


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    iteration = serializers.SerializerMethodField(help_text="The iteration's number.")
    is_current = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "dataset", "iteration", "parent", "is_current", "metrics", "created_at"]

    def get_iteration(self, mv: ModelVersion) -> int | None:
        return mv.iteration.number if mv.iteration_id else None

    def get_is_current(self, mv: ModelVersion) -> bool:
        return mv.dataset.current_model_id == mv.pk


class VersionQualityOutputSerializer(serializers.Serializer):
    """Quality without ground truth (see ``labelapp.selectors.version_quality``)."""

    batch_size = serializers.IntegerField(help_text="Cases in the batch the version selected.")
    batch_confirmed = serializers.IntegerField()
    batch_answered = serializers.IntegerField(help_text="Confirmed + not confirmed.")
    batch_confirm_rate = serializers.FloatField(allow_null=True)
    top_k = serializers.IntegerField(help_text="k: 1% of the cases, at least 100.")
    after_answered = serializers.IntegerField(
        help_text="Answers given after the version was trained, on cases in its top k."
    )
    after_confirmed = serializers.IntegerField()
    after_precision = serializers.FloatField(allow_null=True)
    parent_id = serializers.IntegerField(allow_null=True)
    parent_overlap = serializers.FloatField(
        allow_null=True, help_text="Share of the parent's top k also in this version's top k."
    )
    positives_left = serializers.FloatField(allow_null=True)
    positives_left_low = serializers.FloatField(allow_null=True)
    positives_left_high = serializers.FloatField(allow_null=True)
    positives_left_level = serializers.FloatField(allow_null=True)


class ModelVersionDetailOutputSerializer(ModelVersionOutputSerializer):
    quality = serializers.SerializerMethodField()

    class Meta(ModelVersionOutputSerializer.Meta):
        fields = [
            *ModelVersionOutputSerializer.Meta.fields,
            "params",
            "data_snapshot",
            "feature_names",
            "quality",
        ]

    @extend_schema_field(VersionQualityOutputSerializer)
    def get_quality(self, mv: ModelVersion) -> dict:
        return VersionQualityOutputSerializer(version_quality(mv).as_dict()).data


def _model_versions():
    return ModelVersion.objects.select_related("dataset", "iteration").order_by(
        "-created_at", "-id"
    )


class ModelVersionListApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.MODEL_VIEW}

    @extend_schema(
        operation_id="models_list",
        parameters=PAGE_PARAMETERS,
        responses={
            200: paginated(ModelVersionOutputSerializer, "PaginatedModelVersionList"),
            **error_responses(400, 401, 403, 404),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        """The dataset's model versions, newest first."""
        dataset = get_object_or_404(Dataset, name=name)
        versions = _model_versions().filter(dataset=dataset)
        return paginate(request, self, versions, ModelVersionOutputSerializer)


class ModelVersionDetailApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.MODEL_VIEW}

    @extend_schema(
        operation_id="models_retrieve",
        responses={200: ModelVersionDetailOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, pk: int) -> Response:
        """A model version: parameters, data snapshot, metrics, features and lineage."""
        version = get_object_or_404(_model_versions(), pk=pk)
        return Response(ModelVersionDetailOutputSerializer(version).data)


class ModelVersionPromoteApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.MODEL_MANAGE}

    @extend_schema(
        operation_id="models_promote",
        request=None,
        responses={200: ModelVersionDetailOutputSerializer, **error_responses(401, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        """Make this version the dataset's current model (its scores rank the cases)."""
        version = get_object_or_404(_model_versions(), pk=pk)
        try:
            model_version_promote(version=version, user=request.user, via="api")
        except ModelVersionError as exc:
            raise Conflict(str(exc)) from exc
        version = get_object_or_404(_model_versions(), pk=pk)
        return Response(ModelVersionDetailOutputSerializer(version).data)


class ModelVersionDownloadApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.MODEL_DOWNLOAD}
    throttle_scope = "download"

    @extend_schema(
        operation_id="models_download",
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The export bundle (a sealed zip)."
            ),
            **error_responses(401, 403, 404, 422, 429),
        },
    )
    def get(self, request: Request, pk: int) -> FileResponse:
        """Download the export bundle: model, feature spec, encoder, metrics, model card."""
        version = get_object_or_404(_model_versions(), pk=pk)
        return bundle_response(version, actor=request.user, via="api")


def bundle_response(version: ModelVersion, *, actor, via: str) -> FileResponse:
    """Stream ``version``'s export bundle as a download (audited by the export service)."""
    try:
        handle, size = model_version_export_file(model_version=version, actor=actor, via=via)
    except ExportError as exc:
        raise Unprocessable(str(exc)) from exc
    return bundle_download(version, handle, size)


class RuleCumulativeSerializer(serializers.Serializer):
    coverage = serializers.IntegerField()
    precision = serializers.FloatField(allow_null=True)
    n_known = serializers.IntegerField()
    model_precision = serializers.FloatField(allow_null=True)
    model_n_known = serializers.IntegerField()


class RuleOutputSerializer(serializers.Serializer):
    rule = serializers.CharField(help_text="A conjunction over the hand features.")
    coverage = serializers.IntegerField(help_text="Cases the rule matches.")
    precision = serializers.FloatField(
        allow_null=True,
        help_text="Positives (seeds, confirmed) among the covered cases with a known answer.",
    )
    n_known = serializers.IntegerField(help_text="Covered cases with a known answer.")
    n_positive = serializers.IntegerField()
    model_precision = serializers.FloatField(
        allow_null=True, help_text="The same precision over the model's `coverage` top cases."
    )
    model_n_known = serializers.IntegerField()
    model_n_positive = serializers.IntegerField()
    fit_coverage = serializers.IntegerField()
    fidelity = serializers.FloatField(help_text="Share of covered cases in the model's top.")
    conditions = serializers.ListField(child=serializers.DictField())
    cumulative = RuleCumulativeSerializer(help_text="This rule and the ones before it, together.")


class RulesOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    dataset = serializers.CharField()
    params = serializers.DictField()
    score_threshold = serializers.FloatField()
    hand_features = serializers.DictField()
    precision_definition = serializers.CharField()
    n_cases = serializers.IntegerField()
    n_known = serializers.IntegerField()
    rules = RuleOutputSerializer(many=True)


class ModelVersionRulesApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.MODEL_VIEW}

    class ParamsSerializer(QuerySerializer):
        top_share = serializers.FloatField(
            required=False,
            min_value=RuleParams.BOUNDS["top_share"][0],
            max_value=RuleParams.BOUNDS["top_share"][1],
            help_text=RuleParams.HELP["top_share"],
        )
        max_depth = serializers.IntegerField(
            required=False,
            min_value=RuleParams.BOUNDS["max_depth"][0],
            max_value=RuleParams.BOUNDS["max_depth"][1],
            help_text=RuleParams.HELP["max_depth"],
        )
        max_rules = serializers.IntegerField(
            required=False,
            min_value=RuleParams.BOUNDS["max_rules"][0],
            max_value=RuleParams.BOUNDS["max_rules"][1],
            help_text=RuleParams.HELP["max_rules"],
        )

    @extend_schema(
        operation_id="models_rules",
        parameters=[ParamsSerializer],
        responses={200: RulesOutputSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def get(self, request: Request, pk: int) -> Response:
        """The version's strongest segments as readable rules over the hand features."""
        version = get_object_or_404(_model_versions(), pk=pk)
        query = self.ParamsSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            result = rules_export(
                version=version,
                actor=request.user,
                via="api",
                params=RuleParams.from_mapping(query.validated_data),
            )
        except RulesError as exc:  # the version's files or snapshot: its state, not the input
            raise Conflict(str(exc)) from exc
        return Response(RulesOutputSerializer(result).data)
