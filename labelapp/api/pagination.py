"""Page-number pagination with a caller-chosen page size (bounded), for APIViews too."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from labelapp.api.fields import QuerySerializer


class PagePagination(PageNumberPagination):
    """``page`` and ``page_size`` as the schema says: a page size that is not a number from 1 to
    :attr:`max_page_size` is refused (400), not silently replaced by the default."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 1000

    class ParamsSerializer(QuerySerializer):
        page = serializers.IntegerField(required=False, min_value=1, help_text="Page number.")
        page_size = serializers.IntegerField(
            required=False, min_value=1, max_value=1000, help_text="Items per page."
        )

    def paginate_queryset(self, queryset, request, view=None):
        params = self.ParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return super().paginate_queryset(queryset, request, view)


#: The query parameters of a paginated list (for the schema).
PAGE_PARAMETERS = [PagePagination.ParamsSerializer]


def paginate(
    request: Request,
    view,
    queryset: QuerySet,
    serializer_class: type[serializers.Serializer],
    prepare: Callable[[list], None] | None = None,
) -> Response:
    """One page of ``queryset`` as ``{count, next, previous, results}``; ``prepare`` sees the
    page's objects before they are serialized."""
    paginator = PagePagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    if prepare is not None and page:
        prepare(page)
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
