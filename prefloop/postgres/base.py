"""Django's PostgreSQL backend with a health check that costs no round trip on a quiet connection.

With CONN_HEALTH_CHECKS (persistent connections under gunicorn) Django sends `SELECT 1` before
the first query of every request, so that a connection the server dropped (a restart, an
administrator's pg_terminate_backend, an idle timeout) is replaced instead of failing the
request. On the vote loop that is one round trip in thirteen, on both the web worker's and
PostgreSQL's CPU.

A server that drops a connection says so on the socket: it sends its FATAL message and closes,
so an idle connection with something to read is suspect and an idle connection with nothing to
read has not been dropped by the server. This backend polls the socket (one syscall, no round
trip) and runs Django's `SELECT 1` only when the connection is not idle or has something waiting
(then the check, a reconnect if it fails, and everything after are Django's). What no check sees
without a round trip, a network path that died without a word, `SELECT 1` would only have found
after its TCP timeout too. tests/test_postgres_backend.py; the restart test in
tests/faults/test_postgres_restarted.py runs through it.

Its operations also give Django's query log (DEBUG, CaptureQueriesContext) the text of prepared
statements (annotate/services/prepared.py), for which psycopg keeps none.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base, operations
from psycopg import pq


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        """The statement as run; psycopg records no query for a prepared statement's execution, so
        Django's answer is None there and this composes it from the text and the parameters."""
        found = super().last_executed_query(cursor, sql, params)
        if found is None and sql is not None:
            try:
                return self.compose_sql(sql, params)
            except (psycopg.Error, TypeError, ValueError):  # a log line is not worth an error: the bare text
                return sql
        return found


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    # Set by Django's BaseDatabaseWrapper (CONN_HEALTH_CHECKS); django-stubs does not declare them.
    health_check_enabled: bool
    health_check_done: bool

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def quiet(connection) -> bool:
    """An open connection in no transaction with nothing from the server waiting to be read."""
    try:
        if connection.closed or connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
