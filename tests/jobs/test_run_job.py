"""run_job, cancel_job, reap_stale_jobs and enqueue_job in this process (no worker)."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from prefloop.jobs.context import JobContext
from prefloop.jobs.files import atomic_dir, atomic_write
from prefloop.jobs.models import Job
from prefloop.jobs.registry import JOB_KINDS, UnknownJobKind, register_job_kind
from prefloop.jobs.services import REAPED_ERROR, cancel_job, enqueue_job, reap_stale_jobs, run_job, run_job_inline
from prefloop.jobs.signals import job_finished
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


def queued(kind: str = "selftest.sleep", **params) -> Job:
    return Job.objects.create(kind=kind, params=params)


@pytest.fixture
def test_kinds():
    added = {
        "tests.cancel_self": f"{__name__}.cancel_self_handler",
        "tests.count": f"{__name__}.count_handler",
        "tests.not_json": f"{__name__}.not_json_handler",
        "tests.interrupt": f"{__name__}.interrupt_handler",
        "tests.reaped_mid_run": f"{__name__}.reaped_mid_run_handler",
    }
    for kind, path in added.items():
        register_job_kind(kind, path)
    yield
    for kind in added:
        JOB_KINDS.pop(kind, None)


def cancel_self_handler(job, ctx):
    cancel_job(job)  # as if a user pressed cancel while it runs
    for step in range(100):
        if ctx.should_stop():
            return {"stopped_at": step}
        ctx.progress(step / 100, f"step {step}")
    return {"stopped_at": None}


_calls = []
_calls_lock = threading.Lock()


def count_handler(job, ctx):
    with _calls_lock:
        _calls.append(job.pk)
    ctx.progress(0.5, "counting")
    return {"ok": True}


def not_json_handler(job, ctx):
    return {"value": object()}


def interrupt_handler(job, ctx):
    raise KeyboardInterrupt


def reaped_mid_run_handler(job, ctx):
    # A reaper that gives up on this (still alive) run too early.
    assert reap_stale_jobs(now=timezone.now() + timedelta(hours=1)) == 1
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED
    return {"finished": True}


def test_successful_job_stores_its_result_and_ends_at_full_progress():
    job = run_job(queued(seconds=0.05, steps=5).pk, worker="w1")
    assert job.status == Job.Status.SUCCEEDED
    assert job.result == {"steps_done": 5}
    assert job.progress == 1.0 and job.attempts == 1 and job.worker == "w1"
    assert job.started_at <= job.finished_at
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and "step 5/5" in job.log_tail


def test_failing_job_records_the_error_message_and_keeps_its_progress():
    job = run_job(queued(seconds=0.04, steps=4, fail=True).pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("RuntimeError: selftest failure requested (step ")
    assert "\n" not in job.error and "Traceback" not in job.error  # the traceback is in the log only
    assert job.progress == 0.5 and job.result is None and job.finished_at is not None


def test_a_job_that_is_not_queued_is_not_run_again():
    job = run_job(queued(seconds=0, steps=1).pk)
    again = run_job(job.pk)
    assert again.status == Job.Status.SUCCEEDED and again.attempts == 1


def test_cancelling_a_queued_job_means_it_never_runs():
    job = cancel_job(queued(seconds=0, steps=1))
    assert job.status == Job.Status.CANCELLED and job.finished_at is not None
    assert run_job(job.pk).attempts == 0


def test_a_running_job_stops_at_its_next_check_when_cancelled(test_kinds):
    job = run_job(queued("tests.cancel_self").pk)
    assert job.status == Job.Status.CANCELLED
    assert job.result == {"stopped_at": 0}
    assert Job.objects.get(pk=job.pk).cancel_requested


def test_cancelling_a_finished_job_changes_nothing():
    job = run_job(queued(seconds=0, steps=1).pk)
    assert cancel_job(job).status == Job.Status.SUCCEEDED


def test_a_result_that_is_not_json_fails_the_job(test_kinds):
    job = run_job(queued("tests.not_json").pk)
    assert job.status == Job.Status.FAILED and "TypeError" in job.error


def test_an_interrupt_is_recorded_as_failed_and_then_raised(test_kinds):
    job = queued("tests.interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error.startswith("KeyboardInterrupt")


def test_a_kind_that_is_no_longer_registered_fails_with_a_clear_error():
    job = run_job(queued("no.such.kind").pk)
    assert job.status == Job.Status.FAILED and "Unknown job kind 'no.such.kind'" in job.error


def test_enqueue_refuses_unknown_kinds():
    with pytest.raises(UnknownJobKind):
        enqueue_job(kind="no.such.kind", params={})


def test_enqueue_on_the_db_backend_adds_a_django_task_after_commit(django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    owner = make_user()
    project = make_project(researchers=[owner])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = enqueue_job(kind="selftest.sleep", params={"seconds": 0, "queue": "gpu"}, project=project, user=owner)
        assert not DBTaskResult.objects.exists()  # nothing is dispatched before the commit
    assert len(callbacks) == 1
    task = DBTaskResult.objects.get()
    assert task.args_kwargs == {"args": [job.pk], "kwargs": {}}
    assert task.queue_name == "default"  # the embedded worker runs every queue's work
    assert job.status == Job.Status.QUEUED and job.created_by == owner and job.project == project


def test_the_immediate_backend_runs_the_job_at_commit(settings, django_capture_on_commit_callbacks):
    settings.PREFLOOP_JOB_BACKEND = "immediate"
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue_job(kind="selftest.sleep", params={"seconds": 0, "steps": 2})
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.result == {"steps_done": 2}


def test_a_job_that_cannot_be_dispatched_is_failed_not_left_queued(settings, django_capture_on_commit_callbacks):
    settings.PREFLOOP_JOB_BACKEND = "carrier-pigeon"
    with django_capture_on_commit_callbacks(execute=True):
        job = enqueue_job(kind="selftest.sleep", params={})
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "could not dispatch" in job.error


def test_reaper_fails_running_jobs_whose_heartbeat_stopped_and_keeps_their_progress(settings):
    settings.PREFLOOP_JOB_HEARTBEAT_TIMEOUT = 60
    now = timezone.now()
    dead = Job.objects.create(
        kind="selftest.sleep",
        status="running",
        progress=0.4,
        message="step 4/10",
        started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(seconds=61),
    )
    alive = Job.objects.create(kind="selftest.sleep", status="running", started_at=now, heartbeat_at=now)
    waiting = Job.objects.create(kind="selftest.sleep", created_at=now - timedelta(hours=1))
    assert reap_stale_jobs(now=now) == 1
    dead.refresh_from_db()
    assert dead.status == Job.Status.FAILED and dead.error == REAPED_ERROR
    assert dead.progress == 0.4 and dead.message == "step 4/10" and dead.finished_at == now
    assert Job.objects.get(pk=alive.pk).status == "running"
    assert Job.objects.get(pk=waiting.pk).status == "queued"
    assert reap_stale_jobs(now=now) == 0


def test_a_worker_that_finishes_after_being_reaped_records_the_real_outcome(test_kinds):
    job = run_job(queued("tests.reaped_mid_run").pk)
    assert job.status == Job.Status.SUCCEEDED and job.result == {"finished": True}
    assert Job.objects.get(pk=job.pk).error == ""


def test_job_finished_is_sent_for_every_ending_including_a_reaped_worker(settings):
    seen = []

    def receiver(sender, job, **kwargs):
        seen.append((job.pk, job.status))
        raise RuntimeError("a broken receiver must not break the job system")

    job_finished.connect(receiver)
    try:
        ok = run_job(queued(seconds=0, steps=1).pk)
        cancelled = cancel_job(queued())
        old = timezone.now() - timedelta(hours=1)
        dead = Job.objects.create(kind="selftest.sleep", status="running", started_at=old, heartbeat_at=old)
        assert reap_stale_jobs() == 1
    finally:
        job_finished.disconnect(receiver)
    assert seen == [(ok.pk, "succeeded"), (cancelled.pk, "cancelled"), (dead.pk, "failed")]
    assert ok.status == "succeeded"


def test_checkpoint_dir_is_a_private_folder_under_the_job_dir(job_dir):
    job = run_job(queued(seconds=0, steps=2, artifact=True).pk)
    artifact = job_dir / f"job-{job.pk}" / "artifact.json"
    assert job.result["artifact"] == str(artifact)
    assert json.loads(artifact.read_text())["steps"] == 2
    assert sorted(p.name for p in artifact.parent.iterdir()) == ["artifact.json", "checkpoint.json"]


def test_inline_run_draws_a_progress_bar_and_records_the_job():
    user = make_user()
    stream = io.StringIO()
    job = run_job_inline("selftest.sleep", {"seconds": 0, "steps": 3}, user=user, ctx=JobContext.for_cli(stream=stream))
    assert job.status == Job.Status.SUCCEEDED and job.created_by == user and job.worker.startswith("inline:")
    assert "100%" in stream.getvalue() and "step 3/3" in stream.getvalue()


def test_progress_writes_are_throttled_but_the_last_one_lands(settings):
    settings.PREFLOOP_JOB_PROGRESS_INTERVAL = 3600
    job = Job.objects.create(kind="selftest.sleep", status="running")
    ctx = JobContext(job)
    ctx.progress(0.1, "first")  # the first write always lands
    ctx.progress(0.2, "second")
    assert Job.objects.get(pk=job.pk).message == "first"
    ctx.progress(1.0, "last")
    assert Job.objects.values_list("progress", "message").get(pk=job.pk) == (1.0, "last")


def test_log_tail_keeps_the_last_hundred_lines():
    job = Job.objects.create(kind="selftest.sleep", status="running")
    ctx = JobContext(job)
    for i in range(150):
        ctx.log(f"line {i}")
    ctx.flush()
    lines = Job.objects.get(pk=job.pk).log_tail.splitlines()
    assert len(lines) == 100 and lines[0] == "line 50" and lines[-1] == "line 149"


def test_atomic_write_leaves_nothing_behind_when_it_fails(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "model.bin", 12345)
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"v1")
    with atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"v2")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert (target / "weights.bin").read_bytes() == b"v2"


@pytest.mark.django_db(transaction=True)
def test_only_one_of_several_racing_runners_claims_a_job(test_kinds):
    _calls.clear()
    jobs = [queued("tests.count") for _ in range(5)]
    for job in jobs:
        barrier = threading.Barrier(4)
        outcomes: list = []

        def race(name: str, job_id: int = job.pk, barrier=barrier, outcomes=outcomes) -> None:
            try:
                barrier.wait()
                outcomes.append(run_job(job_id, worker=name).worker == name)
            finally:
                connection.close()

        threads = [threading.Thread(target=race, args=(f"racer-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(outcomes) == 4
        assert sum(outcomes) == 1  # exactly one runner returned its own claim
    assert sorted(_calls) == sorted(job.pk for job in jobs)
    assert set(Job.objects.values_list("status", "attempts")) == {("succeeded", 1)}
