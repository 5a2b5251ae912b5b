"""Prepared statements on PostgreSQL for the hot path (next comparison, vote).

Django binds parameters on the client and never prepares, so PostgreSQL parses and plans every
statement afresh; for the engine's short statements that costs more than executing them. These
cursors bind on the server and ask psycopg to prepare each statement text once per connection
(kept across requests with CONN_MAX_AGE, or in the pool). They go through Django's cursor
wrapper, so query logging, CaptureQueriesContext and execute wrappers see them like any other
statement.

Django opens its psycopg connections with `prepare_threshold=None` (so that transaction-mode
poolers work), and on such a connection psycopg prepares nothing, whatever `prepare=True` says:
until 2026-12-03 these statements were in fact parsed and planned on every call. The cursor
therefore gives the connection a threshold no automatic preparation reaches (Django's own cursors
bind on the client and never prepare anyway), so only what asks with `prepare=True` is prepared.
`DB_PREPARED_STATEMENTS=0` (PREFLOOP_PREPARED_STATEMENTS) leaves the connection as Django opened
it, for a pooler in transaction mode that cannot keep prepared statements.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.db import connection

# A prepare_threshold that only `prepare=True` passes (psycopg counts executions per statement).
ONLY_WHEN_ASKED = 2**31 - 1


@cache
def _preparing_cursor_class():
    from psycopg import Cursor

    class PreparingCursor(Cursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparingCursor


def prepared_cursor():
    """A cursor on the default connection whose statements PostgreSQL plans once per connection."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None and settings.PREFLOOP_PREPARED_STATEMENTS:
        raw.prepare_threshold = ONLY_WHEN_ASKED
    return connection._prepare_cursor(_preparing_cursor_class()(raw))  # type: ignore[attr-defined]  # PostgreSQL's wrapper has it
