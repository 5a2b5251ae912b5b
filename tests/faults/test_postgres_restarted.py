"""PostgreSQL restarted during voting: the server reconnects (CONN_HEALTH_CHECKS), clients retry
with the same idempotency key, and every acknowledged vote is stored exactly once.

The restart happens on a throwaway cluster this test creates (initdb + pg_ctl on a free port),
never on the server other tests use.
"""

from __future__ import annotations

import threading

import pytest

from tests.faults.support import (
    ThrowawayPostgres,
    VotingLog,
    free_port,
    postgres_bin_dir,
    run_support,
    server_answers,
    server_env,
    start_server,
    stop_process_group,
    vote_until,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
CLIENTS = 6
COMPARISONS = 50


@pytest.fixture
def cluster():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (initdb, pg_ctl) to start a throwaway cluster"
        )
    postgres = ThrowawayPostgres(bin_dir)
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.stop()


def test_every_acknowledged_vote_survives_a_postgres_restart_mid_voting(cluster, tmp_path):
    seeded = run_support("seed", cluster.url, str(CLIENTS), str(COMPARISONS), "3")
    port = free_port()
    server = start_server(port=port, env=server_env(cluster.url), log=tmp_path / "server.log", workers=2)
    stop, log = threading.Event(), VotingLog()
    try:
        wait_until(lambda: server_answers(port), timeout=60, what="server up")
        threads = [
            threading.Thread(
                target=vote_until,
                kwargs=dict(port=port, token=token, project_id=seeded["project_id"], stop=stop, log=log, give_up_s=90),
            )
            for token in seeded["tokens"]
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(log.acked) >= 20, timeout=60, what="votes flowing")
        retries_before = log.retries
        cluster.restart()
        acked_at_restart = len(log.acked)
        wait_until(lambda: len(log.acked) >= acked_at_restart + 20, timeout=90, what="voting resumed after the restart")
        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        stop_process_group(server)

    assert not log.failures, log.failures[:5]
    stored = run_support("verify", cluster.url, str(seeded["project_id"]))
    assert len(log.acked) == len(set(log.acked)) == COMPARISONS * 3
    assert sorted(stored["keys"]) == sorted(log.acked)  # each acknowledged key once, nothing else
    assert stored["over_by_counters"] == stored["over_by_rows"] == stored["counter_drift"] == 0
    print(f"{log.retries - retries_before} requests retried across the restart; {len(log.acked)} votes acknowledged")
