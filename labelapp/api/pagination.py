"""Page-number pagination with a caller-chosen page size (bounded), for APIViews too."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response


class PagePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000


PAGE_PARAMETERS = [
    OpenApiParameter("page", int, description="Page number, from 1."),
    OpenApiParameter(
        "page_size", int, description=f"Items per page (at most {PagePagination.max_page_size})."
    ),
]


def paginate(
    request: Request, view, queryset: QuerySet, serializer_class: type[serializers.Serializer]
) -> Response:
    """One page of ``queryset`` as ``{count, next, previous, results}``."""
    paginator = PagePagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def paginated(serializer_class: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The schema of a page of ``serializer_class`` items."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
