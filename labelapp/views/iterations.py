"""Iteration pages: history and launch (admins), live progress (htmx polling), metrics, cancel."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from labelapp.charts import bar_chart, line_chart
from labelapp.models import Dataset, Iteration
from labelapp.policy import Action, cases_visible_to, requires
from labelapp.roles import is_admin
from labelapp.selectors.checks import cases_shown_as_regular, iteration_checks
from labelapp.selectors.iterations import iteration_history, iteration_list, iteration_progress
from labelapp.services.iterations import (
    PARAM_SPECS,
    IterationAlreadyActive,
    IterationParamsError,
    active_iteration,
    default_params,
    iteration_cancel,
    iteration_launch,
    iteration_params_clean,
    iteration_reap_stale,
    iteration_retry,
)
from labelapp.workers import no_worker_message


class IterationLaunchForm(forms.Form):
    """One field per launch parameter; bounds are checked by the service (one source of truth)."""

    def __init__(self, *args, dataset: Dataset, **kwargs):
        super().__init__(*args, **kwargs)
        self.dataset = dataset
        defaults = default_params(dataset)
        for spec in PARAM_SPECS:
            if spec.choices:
                field = forms.ChoiceField(choices=[(c, c) for c in spec.choices], required=False)
            elif spec.kind is bool:
                field = forms.BooleanField(required=False)
            elif spec.kind is int:
                field = forms.IntegerField(required=False)
            else:
                field = forms.FloatField(required=False)
            field.initial = defaults[spec.name]
            field.help_text = spec.help
            if spec.range_text():
                field.help_text += f" Allowed: {spec.range_text()}."
            field.label = spec.label
            self.fields[spec.name] = field

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.params = iteration_params_clean(dict(data), dataset=self.dataset)
        except IterationParamsError as exc:
            for name, message in exc.errors.items():
                self.add_error(name if name in self.fields else None, message)
        return data


@requires(Action.ITERATION_VIEW)
def iteration_list_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    iteration_reap_stale(dataset=dataset)
    history = iteration_history(dataset)
    chart = None
    if history:
        chart = line_chart(
            [
                (
                    "positives found (confirmed)",
                    [p["labels_spent"] for p in history],
                    [p["positives_found"] for p in history],
                ),
            ],
            title="Positives found vs labels spent",
            x_label="labels spent",
            y_label="positives found",
        )
    return render(
        request,
        "labelapp/iteration_list.html",
        {
            "dataset": dataset,
            "iterations": iteration_list(dataset),
            "active": active_iteration(dataset),
            "history": history,
            "history_chart": chart,
        },
    )


@requires(Action.ITERATION_RUN)
def iteration_launch_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    form = IterationLaunchForm(request.POST or None, dataset=dataset)
    needs_seeds = False
    if request.method == "POST" and form.is_valid():
        try:
            iteration = iteration_launch(dataset=dataset, user=request.user, params=form.params)
        except IterationAlreadyActive as exc:
            messages.error(request, str(exc))
            return redirect("iteration-list", name=dataset.name)
        except IterationParamsError as exc:
            form.add_error(None, str(exc))
            needs_seeds = "positives" in exc.errors
        else:
            messages.success(request, f"Iteration #{iteration.number} queued.")
            return redirect(iteration_url(iteration))
    return render(
        request,
        "labelapp/iteration_launch.html",
        {
            "dataset": dataset,
            "form": form,
            "active": active_iteration(dataset),
            "no_worker": no_worker_message(),
            "needs_seeds": needs_seeds,
        },
    )


def _detail_context(iteration: Iteration) -> dict:
    metrics = iteration.metrics or {}
    context = {
        "iteration": iteration,
        "dataset": iteration.dataset,
        "progress": iteration_progress(iteration),
        "metrics": metrics,
        "no_worker": (no_worker_message() if iteration.status == Iteration.Status.QUEUED else None),
    }
    hist = metrics.get("score_histogram")
    if hist:
        edges = hist["edges"]
        context["score_chart"] = bar_chart(
            hist["counts"],
            [f"{edges[i]:.2f}-{edges[i + 1]:.2f}" for i in range(len(hist["counts"]))],
            title="Score histogram (all cases)",
            log=True,
        )
    clusters = metrics.get("batch_by_cluster")
    if clusters:
        names = sorted(clusters, key=lambda c: int(c))
        context["cluster_chart"] = bar_chart(
            [clusters[c] for c in names],
            ["top score" if c == "-1" else f"cluster {c}" for c in names],
            title="Batch by cluster",
            height=140,
        )
    return context


@requires(Action.ITERATION_VIEW)
def iteration_detail_view(request: HttpRequest, name: str, number: int) -> HttpResponse:
    """An iteration's page, at its dataset and number: ``#2`` of a dataset is ``.../2/``."""
    iteration = get_object_or_404(
        Iteration.objects.select_related("dataset", "retry_of"), dataset__name=name, number=number
    )
    iteration_reap_stale(dataset=iteration.dataset)
    iteration.refresh_from_db()
    context = _detail_context(iteration)
    # An expert sees the rows of their own cases only (the case pages' rule).
    batch = iteration.batch.filter(case__in=cases_visible_to(request.user))
    context["batch"] = list(batch.select_related("case", "assigned_to")[:200])
    cases_shown_as_regular(request.user, [item.case for item in context["batch"]])
    if is_admin(request.user):
        context["checks"] = iteration_checks(iteration.pk)
    return render(request, "labelapp/iteration_detail.html", context)


@requires(Action.ITERATION_VIEW)
def iteration_by_id_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Old links by database id (and the API's ids) lead to the page by dataset and number."""
    iteration = get_object_or_404(Iteration.objects.select_related("dataset"), pk=pk)
    return redirect(iteration_url(iteration))


def iteration_url(iteration: Iteration) -> str:
    return reverse("iteration-detail", args=[iteration.dataset.name, iteration.number])


@requires(Action.ITERATION_VIEW)
def iteration_progress_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress fragment; once the run ends the page reloads itself to show the metrics."""
    iteration = get_object_or_404(Iteration.objects.select_related("dataset"), pk=pk)
    iteration_reap_stale(dataset=iteration.dataset)
    iteration.refresh_from_db()
    response = render(
        request, "labelapp/iteration_detail_progress.html", _detail_context(iteration)
    )
    was_active = request.GET.get("active") == "1"
    if was_active and iteration.status not in Iteration.ACTIVE_STATUSES:
        response["HX-Refresh"] = "true"
    return response


@requires(Action.ITERATION_RUN)
@require_POST
def iteration_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    iteration = get_object_or_404(Iteration.objects.select_related("dataset"), pk=pk)
    if iteration_cancel(iteration=iteration, user=request.user):
        messages.success(request, f"Iteration #{iteration.number} cancelled.")
    else:
        messages.warning(request, f"Iteration #{iteration.number} had already ended.")
    return redirect(iteration_url(iteration))


@requires(Action.ITERATION_RUN)
@require_POST
def iteration_retry_view(request: HttpRequest, pk: int) -> HttpResponse:
    iteration = get_object_or_404(Iteration.objects.select_related("dataset"), pk=pk)
    try:
        retry = iteration_retry(iteration=iteration, user=request.user)
    except (IterationAlreadyActive, IterationParamsError) as exc:
        messages.error(request, str(exc))
        return redirect(iteration_url(iteration))
    messages.success(request, f"Retry queued as iteration #{retry.number}.")
    return redirect(iteration_url(retry))


urlpatterns = [
    path("datasets/<slug:name>/iterations/", iteration_list_view, name="iteration-list"),
    path("datasets/<slug:name>/iterations/new/", iteration_launch_view, name="iteration-launch"),
    path(
        "datasets/<slug:name>/iterations/<int:number>/",
        iteration_detail_view,
        name="iteration-detail",
    ),
    path("iterations/<int:pk>/", iteration_by_id_view, name="iteration-by-id"),
    path("iterations/<int:pk>/progress/", iteration_progress_view, name="iteration-progress"),
    path("iterations/<int:pk>/cancel/", iteration_cancel_view, name="iteration-cancel"),
    path("iterations/<int:pk>/retry/", iteration_retry_view, name="iteration-retry"),
]
