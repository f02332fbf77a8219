"""Dataset pages: the list with counts and a dataset's detail."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from labelapp.models import Dataset
from labelapp.roles import expert_required
from labelapp.selectors.datasets import dataset_list, dataset_pool_counts


@expert_required
def dataset_list_view(request: HttpRequest) -> HttpResponse:
    return render(request, "labelapp/dataset_list.html", {"datasets": dataset_list()})


@expert_required
def dataset_detail_view(request: HttpRequest, name: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, name=name)
    return render(
        request,
        "labelapp/dataset_detail.html",
        {"dataset": dataset, "pool_counts": dataset_pool_counts(dataset)},
    )
