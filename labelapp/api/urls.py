"""The API's URL map (mounted at ``/api/``), the OpenAPI schema and the docs pages."""

from __future__ import annotations

from django.urls import path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from labelapp.api import auth, cases, datasets, errors, iterations, labels, models, scoring, seeds
from labelapp.api.fields import MAX_ID


class IdConverter:
    """A row id: digits that fit the database's ids (a longer number is no id: the JSON 404)."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > MAX_ID:
            raise ValueError("not an id")
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(
            url_name="api-schema", template_name="labelapp/api_redoc.html"
        ),
        name="api-redoc",
    ),
    path("auth/token/", auth.TokenApi.as_view(), name="api-token"),
    path("me/", auth.MeApi.as_view(), name="api-me"),
    # datasets ("import" is a reserved dataset name)
    path("datasets/", datasets.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/import/", datasets.DatasetImportApi.as_view(), name="api-dataset-import"),
    path("imports/<str:upload_id>/", datasets.ImportStatusApi.as_view(), name="api-import-status"),
    path("datasets/<str:name>/", datasets.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path(
        "datasets/<str:name>/report/",
        datasets.DatasetReportApi.as_view(),
        name="api-dataset-report",
    ),
    # cases and labels
    path("datasets/<str:name>/cases/", cases.CaseListApi.as_view(), name="api-case-list"),
    path("cases/<id:pk>/", cases.CaseDetailApi.as_view(), name="api-case-detail"),
    path("datasets/<str:name>/queue/next/", labels.QueueNextApi.as_view(), name="api-queue-next"),
    path("labels/", labels.LabelListCreateApi.as_view(), name="api-label-list"),
    path("labels/<id:pk>/undo/", labels.LabelUndoApi.as_view(), name="api-label-undo"),
    # iterations
    path(
        "datasets/<str:name>/iterations/",
        iterations.IterationListLaunchApi.as_view(),
        name="api-iteration-list",
    ),
    path("iterations/<id:pk>/", iterations.IterationDetailApi.as_view(), name="api-iteration"),
    path(
        "iterations/<id:pk>/cancel/",
        iterations.IterationCancelApi.as_view(),
        name="api-iteration-cancel",
    ),
    path(
        "iterations/<id:pk>/retry/",
        iterations.IterationRetryApi.as_view(),
        name="api-iteration-retry",
    ),
    # model versions and scoring
    path(
        "datasets/<str:name>/models/", models.ModelVersionListApi.as_view(), name="api-model-list"
    ),
    path("models/<id:pk>/", models.ModelVersionDetailApi.as_view(), name="api-model-detail"),
    path(
        "models/<id:pk>/promote/",
        models.ModelVersionPromoteApi.as_view(),
        name="api-model-promote",
    ),
    path(
        "models/<id:pk>/download/",
        models.ModelVersionDownloadApi.as_view(),
        name="api-model-download",
    ),
    path("models/<id:pk>/rules/", models.ModelVersionRulesApi.as_view(), name="api-model-rules"),
    path("score/", scoring.ScoreApi.as_view(), name="api-score"),
    # seed positives
    path("datasets/<str:name>/seeds/", seeds.SeedListApplyApi.as_view(), name="api-seeds"),
    path(
        "datasets/<str:name>/seeds/preview/",
        seeds.SeedPreviewApi.as_view(),
        name="api-seeds-preview",
    ),
    path("seeds/<id:pk>/undo/", seeds.SeedUndoApi.as_view(), name="api-seeds-undo"),
    # Last: any other path under /api/ (an unknown one, an id that is not a number) is a JSON 404.
    re_path(r"^(?P<path>.*)$", errors.api_not_found, name="api-not-found"),
]
