"""Training jobs yield the CPU: a worker running one moves to SCHED_IDLE, threads included; others do not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from prefloop.jobs.models import Job
from prefloop.jobs.services import enqueue_job
from tests.jobs.conftest import ROOT, manage, run_worker_batch

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux only")


def test_background_priority_moves_every_thread_and_the_threads_started_later():
    script = textwrap.dedent(
        """
        import os, threading, torch
        torch.set_num_threads(2)
        torch.mm(torch.randn(512, 512), torch.randn(512, 512))  # starts torch's thread pool
        waiting = threading.Event()
        early = threading.Thread(target=waiting.wait); early.start()
        from prefloop.jobs.priority import background_priority, is_background
        assert not is_background()
        assert background_priority()
        late = threading.Thread(target=waiting.wait); late.start()
        policies = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir("/proc/self/task")}
        waiting.set(); early.join(); late.join()
        print(len(policies), sorted(set(policies.values())) == [os.SCHED_IDLE], is_background())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    threads, all_idle, background = done.stdout.split()
    assert int(threads) >= 4 and all_idle == "True" and background == "True"
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the test process was not touched


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("setting, expected", [("idle", "idle"), ("normal", "normal")])
def test_a_worker_runs_a_training_kind_at_the_configured_priority(worker_env, setting, expected):
    short = enqueue_job(kind="selftest.sleep", params={"seconds": 0.05, "steps": 1})
    training = enqueue_job(kind="selftest.train", params={"seconds": 0.05, "steps": 1})
    env = dict(worker_env, PREFLOOP_TRAINING_PRIORITY=setting)
    run_worker_batch(env)
    short.refresh_from_db(), training.refresh_from_db()
    assert short.status == training.status == Job.Status.SUCCEEDED, (short.error, training.error)
    assert training.result == {"steps_done": 1, "cpu_priority": expected}
    assert short.result == {"steps_done": 1}


def test_an_unknown_priority_setting_is_refused_at_start_up():
    env = dict(os.environ, PREFLOOP_TRAINING_PRIORITY="lowest", DATABASE_URL="")
    done = subprocess.run(manage("check"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "PREFLOOP_TRAINING_PRIORITY must be idle or normal, not 'lowest'" in done.stderr
