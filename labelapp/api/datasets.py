"""Datasets: list, status, import report, and import by upload."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelapp.api.errors import error_responses
from labelapp.api.permissions import IsAdmin, IsExpert
from labelapp.models import Dataset
from labelapp.selectors.datasets import dataset_list, dataset_pool_counts


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
        return dataset_pool_counts(dataset)


def _dataset_or_404(name: str) -> Dataset:
    return get_object_or_404(Dataset, name=name)


class DatasetListApi(APIView):
    permission_classes = [IsExpert]

    @extend_schema(
        operation_id="datasets_list",
        responses={200: DatasetOutputSerializer(many=True), **error_responses(401, 403)},
    )
    def get(self, request: Request) -> Response:
        """Every dataset with its status and counts."""
        datasets = dataset_list().select_related("current_model")
        return Response(DatasetOutputSerializer(datasets, many=True).data)


class DatasetDetailApi(APIView):
    permission_classes = [IsExpert]

    @extend_schema(
        operation_id="datasets_retrieve",
        responses={200: DatasetDetailOutputSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        """A dataset's status (importing, ready, failed), counts and cases per pool state."""
        return Response(DatasetDetailOutputSerializer(_dataset_or_404(name)).data)


class DatasetReportApi(APIView):
    permission_classes = [IsAdmin]

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
