"""The model version page's download: the export bundle, for admins (an audit event each time)."""

from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path

from labelapp.models import ModelVersion
from labelapp.policy import Action, requires
from labelapp.services.export import ExportError, bundle_filename, model_version_export_file


@requires(Action.MODEL_DOWNLOAD)
def model_download_view(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion.objects.select_related("dataset"), pk=pk)
    try:
        handle, size = model_version_export_file(
            model_version=version, actor=request.user, via="page"
        )
    except ExportError as exc:
        messages.error(request, f"Cannot export this model: {exc}")
        return redirect("model-detail", pk=pk)
    return bundle_download(version, handle, size)


def bundle_download(version: ModelVersion, handle, size: int) -> FileResponse:
    """The export bundle as a zip download (the page's and the API's)."""
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=bundle_filename(version),
        content_type="application/zip",
    )
    response["Content-Length"] = str(size)
    return response


urlpatterns = [
    path("models/<int:pk>/download/", model_download_view, name="model-download"),
]
