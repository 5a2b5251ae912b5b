"""kill -9 of a web worker in the middle of voting: the supervisor starts a new one, clients retry
with the same idempotency key, and every acknowledged vote is stored exactly once."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import pytest
from rest_framework.authtoken.models import Token

from annotate.models import Assignment, Comparison, Vote
from tests.factories import make_comparisons, make_project, make_user
from tests.faults.support import (
    VotingLog,
    free_port,
    server_answers,
    server_env,
    start_server,
    stop_process_group,
    vote_until,
    wait_until,
    worker_pids,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CLIENTS = 6


def test_every_acknowledged_vote_survives_web_workers_killed_mid_request(subprocess_database_url, tmp_path):
    annotators = [make_user() for _ in range(CLIENTS)]
    project = make_project(annotators=annotators, overlap_target=3)
    make_comparisons(project, 60)
    tokens = [Token.objects.create(user=u).key for u in annotators]
    port = free_port()
    server = start_server(port=port, env=server_env(subprocess_database_url), log=tmp_path / "server.log", workers=2)
    try:
        wait_until(lambda: server_answers(port), timeout=60, what="server up")
        stop, log = threading.Event(), VotingLog()
        threads = [
            threading.Thread(
                target=vote_until, kwargs=dict(port=port, token=t, project_id=project.pk, stop=stop, log=log)
            )
            for t in tokens
        ]
        for thread in threads:
            thread.start()
        killed = []
        for _ in range(3):
            # Wait for votes to flow, then kill a worker while six clients keep it busy.
            target = len(log.acked) + 10
            wait_until(lambda target=target: len(log.acked) >= target, timeout=60, what="votes flowing")
            workers = wait_until(
                lambda: worker_pids(server.pid) if len(worker_pids(server.pid)) == 2 else None,
                timeout=60,
                what="two live workers",
            )
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])
        wait_until(
            lambda: len([p for p in worker_pids(server.pid) if p not in killed]) == 2,
            timeout=60,
            what="the supervisor replaced the killed workers",
        )
        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        stop.set()
        stop_process_group(server)

    assert not log.failures, log.failures[:5]
    stored = Counter(Vote.objects.filter(comparison__project=project).values_list("idempotency_key", flat=True))
    assert len(log.acked) == len(set(log.acked)) == 60 * 3  # the clients worked until nothing was left
    assert set(stored) == set(log.acked) and set(stored.values()) == {1}
    for comparison in Comparison.objects.filter(project=project):
        assert comparison.votes_done == comparison.votes.count() == 3 and comparison.leases_open == 0
    assert not Assignment.objects.filter(project=project, state=Assignment.State.LEASED).exists()
    print(f"killed {len(killed)} workers; {log.retries} retried requests; {len(log.acked)} votes acknowledged")
