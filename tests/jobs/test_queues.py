"""Queues: training kinds run apart from short jobs, and a queued job says how many are ahead of it."""

from __future__ import annotations

import pytest
from django_tasks_db.models import DBTaskResult

from annotate.models import User
from prefloop.jobs.models import Job
from prefloop.jobs.registry import queue_of
from prefloop.jobs.selectors import job_state_text, queue_position, queue_positions
from prefloop.jobs.services import enqueue_job, job_queue
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_queues(settings):
    settings.TASKS = {"default": {**settings.TASKS["default"], "QUEUES": ["default", "training"]}}


def queued(kind: str, **params) -> Job:
    return Job.objects.create(kind=kind, params=params)


def test_training_kinds_ask_for_the_training_queue_and_short_ones_for_default():
    assert queue_of("train_reward_model") == "training"
    assert queue_of("training.update_policy") == "training" and queue_of("training.build_policy") == "training"
    assert queue_of("training.sample_round") == "default" and queue_of("selftest.sleep") == "default"
    assert queue_of("selftest.sleep", {"queue": "gpu"}) == "gpu"


def test_the_db_backend_sends_a_training_job_to_its_queue_when_it_serves_it(
    two_queues, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        train = enqueue_job(kind="train_reward_model", params={"reward_model_id": 0})
        short = enqueue_job(kind="selftest.sleep", params={"seconds": 0})
    assert list(DBTaskResult.objects.order_by("enqueued_at").values_list("queue_name", flat=True)) == [
        "training",
        "default",
    ]
    assert job_queue(train) == "training" and job_queue(short) == "default"


def test_with_only_the_default_queue_every_job_runs_there(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        train = enqueue_job(kind="train_reward_model", params={"reward_model_id": 0})
    assert list(DBTaskResult.objects.values_list("queue_name", flat=True)) == ["default"]
    assert job_queue(train) == "default"


def test_a_queued_job_counts_the_queued_and_running_jobs_of_its_queue_before_it(two_queues):
    running = queued("train_reward_model")
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING, progress=0.81)
    queued("selftest.sleep")  # another queue: not ahead of a training job
    second = queued("train_reward_model")
    third = queued("train_reward_model")
    done = queued("train_reward_model")
    Job.objects.filter(pk=done.pk).update(status=Job.Status.SUCCEEDED)
    short = queued("selftest.sleep")
    assert queue_positions([second, third, short]) == {second.pk: 1, third.pk: 2, short.pk: 1}
    assert job_state_text(third) == "queued (2 ahead)"
    running.refresh_from_db()
    assert queue_position(running) is None and job_state_text(running) == "running 81 %"


def test_one_queue_holds_everything_when_only_default_is_served():
    queued("train_reward_model")
    short = queued("selftest.sleep")
    assert queue_position(short) == 1


def test_the_api_says_how_many_jobs_are_ahead(api, two_queues):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    first = Job.objects.create(kind="train_reward_model", project=project, created_by=researcher)
    second = Job.objects.create(kind="train_reward_model", project=project, created_by=researcher)
    client = api(researcher)
    listed = {row["id"]: row for row in client.get(f"/api/jobs/?project={project.pk}").json()["results"]}
    assert (listed[first.pk]["ahead"], listed[second.pk]["ahead"]) == (0, 1)
    assert listed[second.pk]["queue"] == "training"
    detail = client.get(f"/api/jobs/{second.pk}/").json()
    assert detail["ahead"] == 1
    Job.objects.filter(pk=second.pk).update(status=Job.Status.RUNNING)
    assert client.get(f"/api/jobs/{second.pk}/").json()["ahead"] is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_default_queue_worker_runs_short_jobs_while_a_training_job_waits_for_its_own_worker(two_queues, worker_env):
    from tests.jobs.conftest import run_worker_batch

    training = enqueue_job(kind="selftest.sleep", params={"seconds": 0, "steps": 1, "queue": "training"})
    short = enqueue_job(kind="selftest.sleep", params={"seconds": 0, "steps": 1})
    env = {**worker_env, "PREFLOOP_JOB_QUEUES": "default,training"}
    for queue in ("default", "training"):
        run_worker_batch(env, "--queue-name", queue, timeout=120)
        training.refresh_from_db(), short.refresh_from_db()
        if queue == "default":  # the short job did not wait behind the training one
            assert (short.status, training.status) == (Job.Status.SUCCEEDED, Job.Status.QUEUED)
    assert training.status == Job.Status.SUCCEEDED
