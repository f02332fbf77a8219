"""The import upload page (admins): files streamed to UPLOADS_DIR, then imported inline when
small, or by a worker with a status page that polls its progress fragment (htmx)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse

from labelapp.importing.report import ImportReport
from labelapp.policy import Action, requires
from labelapp.services.uploads import upload_import, upload_save, upload_status
from labelapp.tasks.imports import dataset_import_upload


class DatasetImportForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, - and _.")
    cases = forms.FileField(help_text="cases.csv, cases.csv.gz or cases.parquet")
    events = forms.FileField(
        required=False, help_text="events.csv, events.csv.gz or events.parquet (optional)"
    )
    schema = forms.FileField(required=False, help_text="schema.json (optional)")
    replace = forms.BooleanField(required=False, help_text="Replace a dataset of this name.")


def _report_context(report: dict | None) -> dict:
    return {"report": ImportReport.from_dict(report) if report else None}


@requires(Action.DATASET_IMPORT)
def dataset_import_view(request: HttpRequest) -> HttpResponse:
    form = DatasetImportForm(request.POST or None, request.FILES or None)
    if request.method != "POST" or not form.is_valid():
        return render(request, "labelapp/dataset_import.html", {"form": form})
    data = form.cleaned_data
    upload_id, size = upload_save(
        files={role: data.get(role) for role in ("cases", "events", "schema")}
    )
    if size > settings.IMPORT_INLINE_MAX_BYTES:
        transaction.on_commit(
            lambda: dataset_import_upload.delay(
                upload_id, data["name"], data["replace"], request.user.pk
            )
        )
        return redirect("dataset-import-status", upload_id=upload_id)
    status = upload_import(
        upload_id=upload_id,
        name=data["name"],
        replace=data["replace"],
        user=request.user,
        discard=True,
    )
    if status["state"] == "imported":
        messages.success(
            request,
            f"Imported {status['dataset']}: {status['cases']} cases, {status['events']} events.",
        )
        return redirect("dataset-detail", name=status["dataset"])
    context = {"form": form, **_report_context(status.get("report"))}
    return render(request, "labelapp/dataset_import.html", context, status=400)


def _status_context(upload_id: str) -> dict:
    status = upload_status(upload_id)
    if status is None:
        raise Http404("no such upload")
    total = status.get("total") or 0
    percent = round(100 * status.get("done", 0) / total) if total else None
    return {
        "upload_id": upload_id,
        "status": status,
        "percent": percent,
        "done": status["state"] in ("imported", "rejected", "failed"),
        **_report_context(status.get("report")),
    }


@requires(Action.DATASET_IMPORT)
def dataset_import_status_view(request: HttpRequest, upload_id: str) -> HttpResponse:
    return render(request, "labelapp/dataset_import_status.html", _status_context(upload_id))


@requires(Action.DATASET_IMPORT)
def dataset_import_progress_view(request: HttpRequest, upload_id: str) -> HttpResponse:
    """The htmx fragment polled by the status page (it stops polling once the import ends)."""
    context = _status_context(upload_id)
    response = render(request, "labelapp/dataset_import_status_progress.html", context)
    if context["done"] and context["status"]["state"] == "imported" and request.htmx:
        response["HX-Redirect"] = reverse("dataset-detail", args=[context["status"]["dataset"]])
    return response


urlpatterns = [
    path("", dataset_import_view, name="dataset-import"),
    path("<str:upload_id>/", dataset_import_status_view, name="dataset-import-status"),
    path("<str:upload_id>/progress/", dataset_import_progress_view, name="dataset-import-progress"),
]
