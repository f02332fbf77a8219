"""Pages about the experts' work: statistics, the label audit log, the pattern taxonomy."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count, ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labelapp.models import Dataset, PatternTag
from labelapp.policy import Action, requires
from labelapp.roles import is_admin
from labelapp.selectors.labels import expert_stats, label_audit_events
from labelapp.services.audit import audit_event_create


@requires(Action.STATS_VIEW)
def expert_stats_view(request: HttpRequest) -> HttpResponse:
    """Admins see every expert; an expert sees their own line."""
    dataset = None
    if request.GET.get("dataset"):
        dataset = get_object_or_404(Dataset, name=request.GET["dataset"])
    user = None if is_admin(request.user) else request.user
    return render(
        request,
        "labelapp/expert_stats.html",
        {
            "stats": expert_stats(dataset=dataset, user=user, with_checks=user is None),
            "dataset": dataset,
            "datasets": Dataset.objects.order_by("name"),
            "events": label_audit_events(dataset=dataset) if is_admin(request.user) else None,
            "show_checks": user is None,
        },
    )


class PatternTagForm(forms.ModelForm):
    class Meta:
        model = PatternTag
        fields = ["name", "description", "parent"]
        widgets = {"description": forms.TextInput()}


@requires(Action.PATTERN_MANAGE)
def pattern_list_view(request: HttpRequest) -> HttpResponse:
    form = PatternTagForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        tag = form.save()
        audit_event_create(actor=request.user, verb="pattern.create", target=tag)
        messages.success(request, f"Pattern “{tag.name}” added.")
        return redirect("pattern-list")
    tags = PatternTag.objects.select_related("parent").annotate(n_labels=Count("label"))
    return render(request, "labelapp/pattern_list.html", {"tags": tags, "form": form})


@requires(Action.PATTERN_MANAGE)
def pattern_edit_view(request: HttpRequest, pk: int) -> HttpResponse:
    tag = get_object_or_404(PatternTag, pk=pk)
    form = PatternTagForm(request.POST or None, instance=tag)
    form.fields["parent"].queryset = PatternTag.objects.exclude(pk=tag.pk)
    if request.method == "POST" and form.is_valid():
        form.save()
        audit_event_create(actor=request.user, verb="pattern.update", target=tag)
        messages.success(request, f"Pattern “{tag.name}” saved.")
        return redirect("pattern-list")
    return render(request, "labelapp/pattern_edit.html", {"tag": tag, "form": form})


@requires(Action.PATTERN_MANAGE)
@require_POST
def pattern_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    tag = get_object_or_404(PatternTag, pk=pk)
    try:
        tag.delete()
    except ProtectedError:
        messages.error(request, f"“{tag.name}” has sub-patterns; move or delete them first.")
    else:
        audit_event_create(actor=request.user, verb="pattern.delete", data={"name": tag.name})
        messages.success(request, f"Pattern “{tag.name}” deleted (labels keep no tag).")
    return redirect("pattern-list")
