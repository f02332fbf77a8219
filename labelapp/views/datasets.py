"""Dataset pages: the list with counts and a dataset's detail."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from labelapp.models import Dataset
from labelapp.policy import Action, requires
from labelapp.selectors.checks import n_labeled_shown_to
from labelapp.selectors.datasets import dataset_detail, dataset_list, dataset_pool_rows


@requires(Action.DATASET_VIEW)
def dataset_list_view(request: HttpRequest) -> HttpResponse:
    datasets = list(dataset_list())
    for dataset in datasets:  # hidden checks counted as the batch cases experts take them for
        dataset.n_labeled = n_labeled_shown_to(request.user, dataset)
    return render(request, "labelapp/dataset_list.html", {"datasets": datasets})


@requires(Action.DATASET_VIEW)
def dataset_detail_view(request: HttpRequest, name: str) -> HttpResponse:
    try:
        dataset = dataset_detail(name)
    except Dataset.DoesNotExist as exc:
        raise Http404("no such dataset") from exc
    dataset.n_labeled = n_labeled_shown_to(request.user, dataset)
    return render(
        request,
        "labelapp/dataset_detail.html",
        {
            "dataset": dataset,
            "pool_rows": dataset_pool_rows(dataset, request.user),
            "report": dataset.import_report or {},
            "scores_updating": dataset.case_scores_pending,
        },
    )
