"""The API's one paginator: limit/offset with bounds, so `?limit=1e20` is a page of 1,000, not a 500."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**31 - 1  # beyond any table here; SQLite refuses integers past 2**63 with an OverflowError


class Pagination(LimitOffsetPagination):
    max_limit = 1000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)


def paginated(serializer: serializers.Serializer, name: str) -> serializers.Serializer:
    """The OpenAPI shape of a page: {count, next, previous, results: [serializer]} (APIViews that paginate by hand)."""
    return inline_serializer(
        name=name,
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer.__class__(many=True),
        },
    )
