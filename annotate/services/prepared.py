"""Prepared statements on PostgreSQL for the hot path (next comparison, vote).

Django binds parameters on the client and never prepares, so PostgreSQL plans every statement
afresh; for the engine's short statements planning costs about ten times the execution. These
cursors bind on the server and ask psycopg to prepare each statement text once per connection
(kept across requests with CONN_MAX_AGE). They go through Django's cursor wrapper, so query
logging, CaptureQueriesContext and execute wrappers see them like any other statement.
"""

from __future__ import annotations

from functools import cache

from django.db import connection


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
    return connection._prepare_cursor(_preparing_cursor_class()(connection.connection))  # type: ignore[attr-defined]  # PostgreSQL's wrapper has it
