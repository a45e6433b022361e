"""The API's pages: DRF's limit and offset, bounded."""

from __future__ import annotations

from rest_framework import pagination


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pages with a ceiling on both. Unbounded, a `limit` or `offset` past
    what the database stores as an integer failed the query (a 500 on SQLite and PostgreSQL);
    a page of everything is no page either."""

    max_limit = 1000

    def get_offset(self, request) -> int:
        # The count is known by now: past it every page is empty, whatever the number.
        return min(super().get_offset(request), self.count)
