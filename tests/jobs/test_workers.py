"""Real worker processes against the test database: db_worker (batch and killed) and Celery."""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from prefloop.jobs.models import Job
from prefloop.jobs.services import REAPED_ERROR, enqueue_job, reap_stale_jobs
from tests.factories import make_project, make_user
from tests.jobs.conftest import manage, run_worker_batch, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_db_worker_runs_queued_jobs_to_the_end(worker_env, job_dir):
    user = make_user()
    project = make_project(researchers=[user])
    ok = enqueue_job(
        kind="selftest.sleep", params={"seconds": 0.2, "steps": 4, "artifact": True}, project=project, user=user
    )
    bad = enqueue_job(kind="selftest.sleep", params={"seconds": 0.1, "steps": 2, "fail": True})
    run_worker_batch(worker_env)
    ok.refresh_from_db(), bad.refresh_from_db()
    assert ok.status == Job.Status.SUCCEEDED, ok.error
    assert ok.result == {"steps_done": 4, "artifact": str(job_dir / f"job-{ok.pk}" / "artifact.json")}
    assert ok.worker.startswith("db:") and ok.progress == 1.0
    assert json.loads((job_dir / f"job-{ok.pk}" / "artifact.json").read_text())["job"] == ok.pk
    assert bad.status == Job.Status.FAILED and "selftest failure requested" in bad.error


def test_a_job_whose_worker_is_killed_is_failed_by_the_reaper_without_a_ready_artifact(
    worker_env, job_dir, start_process, settings
):
    worker = start_process(manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1"), worker_env)
    job = enqueue_job(kind="selftest.sleep", params={"seconds": 60, "steps": 300, "artifact": True})

    def running_with_progress():
        job.refresh_from_db()
        return job.status == Job.Status.RUNNING and job.progress > 0

    wait_until(running_with_progress, timeout=20, proc=worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    progress_at_kill = Job.objects.get(pk=job.pk).progress

    settings.PREFLOOP_JOB_HEARTBEAT_TIMEOUT = 2
    assert reap_stale_jobs() == 0  # its last heartbeat is still fresh
    assert reap_stale_jobs(now=timezone.now() + timedelta(seconds=3)) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error == REAPED_ERROR
    assert job.progress == progress_at_kill > 0 and job.finished_at is not None
    assert job.result is None
    folder = job_dir / f"job-{job.pk}"
    assert not (folder / "artifact.json").exists()
    # Whatever sits at a final name is complete; a torn write can only be a hidden temp file.
    for path in folder.iterdir():
        if not path.name.startswith("."):
            assert json.loads(path.read_text())["of"] == 300


def test_celery_worker_runs_a_job_from_the_redis_queue(worker_env, start_process, settings):
    redis = pytest.importorskip("redis")
    broker = os.environ.get("PREFLOOP_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/5")
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {broker}")
    queue = f"test-{uuid.uuid4().hex[:12]}"  # parallel runs never take each other's messages
    settings.PREFLOOP_JOB_BACKEND = "celery"
    settings.CELERY_BROKER_URL = broker
    env = {**worker_env, "PREFLOOP_JOB_BACKEND": "celery", "CELERY_BROKER_URL": broker}
    worker = start_process(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "prefloop",
            "worker",
            "--pool",
            "solo",
            "-Q",
            queue,
            "-n",
            f"{queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ],
        env,
    )
    try:
        job = enqueue_job(kind="selftest.sleep", params={"seconds": 0.3, "steps": 3, "queue": queue})

        def finished():
            job.refresh_from_db()
            return job.is_finished

        wait_until(finished, timeout=60, interval=0.2, proc=worker)
        assert job.status == Job.Status.SUCCEEDED, job.error
        assert job.result == {"steps_done": 3} and job.worker.startswith("celery:")
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        client = redis.Redis.from_url(broker)
        client.delete(queue, f"_kombu.binding.{queue}")
