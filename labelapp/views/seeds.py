"""The Seeds page (admins): mark or unmark seed positives by a rule or a list of case ids, after
a preview; the history of changes with undo; and the case page's "mark as seed" action."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from labelapp.models import AuditEvent, Case, Dataset
from labelapp.policy import Action, requires
from labelapp.selectors.case_expressions import dataset_columns
from labelapp.selectors.seeds import SeedSource, seed_changes, seed_ids_parse, seed_preview
from labelapp.services.seeds import SeedUndoError, seeds_apply, seeds_undo

MAX_UPLOAD_BYTES = 2_000_000


def _ids_from_request(request: HttpRequest) -> list[str]:
    upload = request.FILES.get("ids_file")
    text = request.POST.get("ids", "")
    if upload is not None:
        if upload.size > MAX_UPLOAD_BYTES:
            raise ValueError(f"the file is larger than {MAX_UPLOAD_BYTES // 1_000_000} MB")
        text += "\n" + upload.read().decode("utf-8", errors="replace")
    return seed_ids_parse(text)


def _page(request: HttpRequest, dataset: Dataset, **extra) -> HttpResponse:
    context = {
        "dataset": dataset,
        "columns": sorted(dataset_columns(dataset).items()),
        "changes": seed_changes(dataset),
        "rule": "",
        "remove": False,
    }
    context.update(extra)
    return render(request, "labelapp/seeds.html", context)


@requires(Action.SEEDS_MANAGE)
def seeds_view(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the page; with ``?rule=`` the rule's preview; POST (ids): the list's preview."""
    dataset = get_object_or_404(Dataset, name=name)
    remove = (request.POST if request.method == "POST" else request.GET).get("remove") == "1"
    extra: dict = {"remove": remove}
    try:
        if request.method == "POST":
            ids = _ids_from_request(request)
            extra.update(ids="\n".join(ids), n_ids=len(ids), kind="ids")
            extra["preview"] = seed_preview(dataset, SeedSource(case_ids=tuple(ids)), remove=remove)
        elif request.GET.get("rule", "").strip():
            rule = request.GET["rule"].strip()
            extra.update(rule=rule, kind="rule")
            extra["preview"] = seed_preview(dataset, SeedSource(rule=rule), remove=remove)
    except ValueError as exc:
        extra["error"] = str(exc)
        extra["unknown_ids"] = getattr(exc, "unknown_ids", [])
    return _page(request, dataset, **extra)


@requires(Action.SEEDS_MANAGE)
@require_POST
def seeds_apply_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    remove = request.POST.get("remove") == "1"
    rule = request.POST.get("rule", "").strip()
    source = (
        SeedSource(rule=rule)
        if rule
        else SeedSource(case_ids=tuple(seed_ids_parse(request.POST.get("ids", ""))))
    )
    try:
        result = seeds_apply(dataset=dataset, source=source, user=request.user, remove=remove)
    except ValueError as exc:
        messages.error(request, f"Nothing was changed: {exc}")
        query = "?" + urlencode({"rule": rule}) if rule else ""
        return redirect(reverse("seeds", args=[dataset.name]) + query)
    if result.event is None:
        messages.warning(request, f"Nothing to change: no case of {source.label()} could be.")
    else:
        done = "unmarked" if remove else "marked as seed positives"
        messages.success(
            request,
            f"{result.n_changed} cases {done} ({source.label()}). "
            "The change is in the list below and can be undone.",
        )
    return redirect("seeds", name=dataset.name)


@requires(Action.SEEDS_MANAGE)
@require_POST
def seeds_undo_view(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    event = get_object_or_404(AuditEvent, pk=pk, dataset=dataset)
    try:
        undo = seeds_undo(event=event, user=request.user)
    except SeedUndoError as exc:
        messages.error(request, str(exc))
    else:
        since = undo.data["changed_since"]
        note = f"; {len(since)} changed since and left as they are" if since else ""
        messages.success(
            request, f"Change #{event.pk} undone: {undo.data['n_restored']} cases restored{note}."
        )
    return redirect("seeds", name=dataset.name)


@requires(Action.SEEDS_MANAGE)
@require_POST
def case_seed_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The case page's "mark as seed" / "unmark" button."""
    case = get_object_or_404(Case.objects.select_related("dataset"), pk=pk)
    remove = request.POST.get("remove") == "1"
    result = seeds_apply(
        dataset=case.dataset, source=SeedSource(case_pk=case.pk), user=request.user, remove=remove
    )
    if result.event is not None:
        done = "is no longer a seed positive" if remove else "is now a seed positive"
        messages.success(request, f"Case {case.case_id} {done} (undo on the Seeds page).")
    else:
        reasons = ", ".join(result.preview.not_changed) or (
            "it is not a seed" if remove else "it is a seed already"
        )
        messages.warning(request, f"Case {case.case_id} was not changed: {reasons}.")
    return redirect("case-detail", pk=case.pk)


urlpatterns = [
    path("datasets/<slug:name>/seeds/", seeds_view, name="seeds"),
    path("datasets/<slug:name>/seeds/apply/", seeds_apply_view, name="seeds-apply"),
    path("datasets/<slug:name>/seeds/<int:pk>/undo/", seeds_undo_view, name="seeds-undo"),
    path("cases/<int:pk>/seed/", case_seed_view, name="case-seed"),
]
