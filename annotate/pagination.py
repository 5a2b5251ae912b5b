"""The API's one paginator: limit/offset with bounds, so `?limit=1e20` is a page of 1,000, not a 500."""
from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

MAX_OFFSET = 2**31 - 1  # beyond any table here; SQLite refuses integers past 2**63 with an OverflowError


class Pagination(LimitOffsetPagination):
    max_limit = 1000

    def get_offset(self, request) -> int:
        return min(super().get_offset(request), MAX_OFFSET)
