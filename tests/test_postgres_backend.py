"""prefloop.postgres: the health check polls the socket of a quiet connection instead of sending
`SELECT 1`, and a connection the server dropped is still found and replaced."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from prefloop.postgres.base import quiet

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MARKER = "SELECT 'prefloop-health-marker'"


def last_statement_of(pid: int) -> str:
    """What pg_stat_activity says the backend `pid` ran last, read from another connection."""
    with psycopg.connect(_dsn(), autocommit=True) as other:
        return other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def _dsn() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}
    )


def start_of_request() -> None:
    """What request_started does to the connection: the next query checks health again."""
    connection.close_if_unusable_or_obsolete()
    assert connection.health_check_enabled and not connection.health_check_done


def test_the_engine_is_ours_and_checks_health():
    assert settings.DATABASES["default"]["ENGINE"] == "prefloop.postgres"
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


def test_a_quiet_connection_is_not_sent_select_1():
    connection.ensure_connection()
    raw = connection.connection
    pid = raw.info.backend_pid
    raw.execute(MARKER)
    start_of_request()
    with connection.cursor():  # Django's first cursor of a request: the health check runs here
        pass
    assert connection.health_check_done
    assert connection.connection is raw
    assert last_statement_of(pid) == MARKER  # no SELECT 1 went to the server


def test_a_connection_the_server_dropped_is_replaced_before_the_query():
    connection.ensure_connection()
    dropped = connection.connection
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [dropped.info.backend_pid]).fetchone()[0]
    start_of_request()
    with connection.cursor() as cursor:  # would fail on the dead connection without the check
        cursor.execute("SELECT 41 + 1")
        assert cursor.fetchone() == (42,)
    assert dropped.closed
    assert connection.connection is not dropped


def test_a_connection_with_something_waiting_gets_djangos_select_1():
    connection.ensure_connection()
    raw = connection.connection
    pid = raw.info.backend_pid
    raw.execute("LISTEN prefloop_health_test")
    with psycopg.connect(_dsn(), autocommit=True) as other:
        other.execute("NOTIFY prefloop_health_test")
    start_of_request()
    for _ in range(250):  # the notification reaches the socket asynchronously (at most 5 s)
        if not quiet(raw):
            break
        time.sleep(0.02)
    with connection.cursor():
        pass
    assert connection.connection is raw  # healthy: kept
    assert last_statement_of(pid) == "SELECT 1"
    raw.execute("UNLISTEN *")
