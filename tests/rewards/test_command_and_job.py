"""The train_reward_model command and the job handler run the same path and leave a ready version."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from rewards.models import RewardModel
from tests.rewards.conftest import tiny_options

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_the_command_trains_and_prints_the_metrics_as_json_last(voted_project, tiny_model_dir, model_dir, capsys):
    project, _, _ = voted_project
    call_command(
        "train_reward_model",
        "--project",
        project.name,
        "--base-model",
        str(tiny_model_dir),
        "--max-length",
        "64",
        "--lr",
        "5e-3",
        "--batch-size",
        "8",
        "--max-steps",
        "3",
        "--eval-fraction",
        "0.25",
        "--make-current",
    )
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    version = RewardModel.objects.get(pk=summary["reward_model_id"])
    assert version.status == RewardModel.Status.READY and version.is_current and version.trigger == "command"
    assert summary["metrics"]["steps"] == 3 and 0 <= summary["metrics"]["accuracy"] <= 1
    assert version.job_id is not None


def test_a_queued_version_runs_through_the_job_system(voted_project, tiny_model_dir, model_dir):
    from prefloop.jobs.context import JobContext
    from prefloop.jobs.models import Job
    from prefloop.jobs.services import run_job
    from rewards import services

    project, researcher, _ = voted_project
    version, job = services.request_training(project=project, user=researcher, options=tiny_options(tiny_model_dir))
    job = run_job(job.pk, ctx=JobContext())
    version.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["reward_model_id"] == version.pk and job.result["version"] == 1
    assert version.status == RewardModel.Status.READY and version.job_id == job.pk


def test_a_cancelled_job_leaves_the_version_failed(voted_project, tiny_model_dir, model_dir):
    from prefloop.jobs.context import JobContext
    from prefloop.jobs.models import Job
    from prefloop.jobs.services import run_job
    from rewards import services

    project, _, _ = voted_project
    version, job = services.request_training(project=project, options=tiny_options(tiny_model_dir, max_steps=50))
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job = run_job(job.pk, ctx=JobContext())
    version.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert version.status == RewardModel.Status.FAILED and "stopped" in version.error and not version.artifact_path


def test_a_worker_killed_mid_training_leaves_the_version_failed_not_training(voted_project, tiny_model_dir, model_dir):
    # What the reaper sees after a kill -9: a running job whose heartbeat stopped.
    from datetime import timedelta

    from django.utils import timezone

    from prefloop.jobs.models import Job
    from prefloop.jobs.services import reap_stale_jobs
    from rewards import services

    project, _, _ = voted_project
    version, job = services.request_training(project=project, options=tiny_options(tiny_model_dir))
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, started_at=long_ago, heartbeat_at=long_ago)
    RewardModel.objects.filter(pk=version.pk).update(status=RewardModel.Status.TRAINING)
    assert reap_stale_jobs() == 1
    version.refresh_from_db()
    assert version.status == RewardModel.Status.FAILED and f"training job {job.pk} failed" in version.error
