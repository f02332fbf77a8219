"""Datasets: list, status, import report, and import by upload."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import ImportRefused, error_responses
from labelapp.api.permissions import PolicyPermission
from labelapp.models import Dataset
from labelapp.policy import Action
from labelapp.selectors.checks import pool_counts_shown_to
from labelapp.selectors.datasets import dataset_list, dataset_pool_counts
from labelapp.services.uploads import upload_import, upload_save, upload_status
from labelapp.tasks.imports import dataset_import_upload


class DatasetOutputSerializer(serializers.ModelSerializer):
    current_model = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "description",
            "status",
            "n_cases",
            "n_events",
            "n_seed_positive",
            "feature_columns",
            "current_model",
            "created_at",
            "updated_at",
        ]


class DatasetDetailOutputSerializer(DatasetOutputSerializer):
    pool_counts = serializers.SerializerMethodField()

    class Meta(DatasetOutputSerializer.Meta):
        fields = [*DatasetOutputSerializer.Meta.fields, "schema", "pool_counts"]

    def get_pool_counts(self, dataset: Dataset) -> dict[str, int]:
        counts = dataset_pool_counts(dataset)
        user = self.context.get("user")
        return counts if user is None else pool_counts_shown_to(user, dataset, counts)


def _dataset_or_404(name: str) -> Dataset:
    return get_object_or_404(Dataset, name=name)


class DatasetListApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.DATASET_VIEW}

    @extend_schema(
        operation_id="datasets_list",
        responses={200: DatasetOutputSerializer(many=True), **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        """Every dataset with its status and counts."""
        datasets = dataset_list().select_related("current_model")
        return Response(DatasetOutputSerializer(datasets, many=True).data)


class DatasetDetailApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.DATASET_VIEW}

    @extend_schema(
        operation_id="datasets_retrieve",
        responses={200: DatasetDetailOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        """A dataset's status (importing, ready, failed), counts and cases per pool state."""
        dataset = _dataset_or_404(name)
        # Hidden checks count as the batch cases an expert takes them for.
        context = {"user": request.user}
        return Response(DatasetDetailOutputSerializer(dataset, context=context).data)


class DatasetReportApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.DATASET_IMPORT}

    @extend_schema_serializer(component_name="DatasetReport")
    class OutputSerializer(serializers.Serializer):
        name = serializers.CharField()
        status = serializers.CharField()
        report = serializers.JSONField(help_text="What was imported, what was rejected and why.")

    @extend_schema(
        operation_id="datasets_report",
        responses={200: OutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        """The import report: rows read, imported and rejected, with the reasons."""
        dataset = _dataset_or_404(name)
        payload = {"name": dataset.name, "status": dataset.status, "report": dataset.import_report}
        return Response(self.OutputSerializer(payload).data)


class DatasetImportApi(APIView):
    """Upload a dataset: small uploads import while you wait, larger ones in a worker."""

    permission_classes = [PolicyPermission]
    policy_actions = {"POST": Action.DATASET_IMPORT}
    throttle_scope = "import"
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="DatasetImportRequest")
    class InputSerializer(serializers.Serializer):
        name = serializers.SlugField(max_length=100, help_text="Letters, digits, - and _.")
        description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
        cases = serializers.FileField(help_text="cases.csv, cases.csv.gz or cases.parquet")
        events = serializers.FileField(
            required=False, help_text="events.csv, events.csv.gz or events.parquet (optional)"
        )
        schema = serializers.FileField(required=False, help_text="schema.json (optional)")
        replace = serializers.BooleanField(
            required=False, default=False, help_text="Replace a dataset of this name."
        )

    @extend_schema_serializer(component_name="DatasetImportStatus")
    class StatusSerializer(serializers.Serializer):
        upload_id = serializers.CharField()
        state = serializers.ChoiceField(
            choices=["queued", "running", "imported", "rejected", "failed"]
        )
        stage = serializers.CharField(required=False)
        done = serializers.IntegerField(required=False)
        total = serializers.IntegerField(required=False, allow_null=True)
        dataset = serializers.CharField(required=False, help_text="The imported dataset's name.")
        cases = serializers.IntegerField(required=False)
        events = serializers.IntegerField(required=False)
        report = serializers.JSONField(required=False, help_text="Problems, when rejected.")
        error = serializers.CharField(required=False)

    @extend_schema(
        operation_id="datasets_import",
        request={"multipart/form-data": InputSerializer},
        responses={
            201: DatasetDetailOutputSerializer,
            202: OpenApiResponse(StatusSerializer, description="Queued for a worker; poll it."),
            **error_responses(400, 401, 403, 413, 429),
        },
    )
    def post(self, request: Request) -> Response:
        """Import cases (and events, schema): validated, all or nothing, with a report."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        upload_id, size = upload_save(
            files={role: fields.get(role) for role in ("cases", "events", "schema")}
        )
        if size > settings.IMPORT_INLINE_MAX_BYTES:
            user_id = request.user.pk
            transaction.on_commit(
                lambda: dataset_import_upload.delay(
                    upload_id, fields["name"], fields["replace"], user_id
                )
            )
            status = {**upload_status(upload_id), "upload_id": upload_id}
            headers = {"Location": reverse("api-import-status", args=[upload_id])}
            return Response(self.StatusSerializer(status).data, status=202, headers=headers)
        result = upload_import(
            upload_id=upload_id,
            name=fields["name"],
            replace=fields["replace"],
            user=request.user,
            discard=True,
        )
        if result["state"] == "rejected":
            raise ImportRefused(result["report"])
        dataset = Dataset.objects.get(name=result["dataset"])
        if fields.get("description"):
            Dataset.objects.filter(pk=dataset.pk).update(description=fields["description"])
            dataset.refresh_from_db()
        return Response(DatasetDetailOutputSerializer(dataset).data, status=201)


class ImportStatusApi(APIView):
    permission_classes = [PolicyPermission]
    policy_actions = {"GET": Action.DATASET_IMPORT}

    @extend_schema(
        operation_id="imports_status",
        responses={200: DatasetImportApi.StatusSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, upload_id: str) -> Response:
        """Where a queued import stands: queued, running (stage, progress), imported, rejected."""
        try:
            status = upload_status(upload_id)
        except ValueError:
            status = None
        if status is None:
            raise NotFound("no such upload")
        payload = {**status, "upload_id": upload_id}
        return Response(DatasetImportApi.StatusSerializer(payload).data)
