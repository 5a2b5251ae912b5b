"""A real reward-model training job (MiniLM, the project's votes) whose db_worker is killed with
SIGKILL in the middle of training ends failed: its job, its version, and no artifact at the final name."""

from __future__ import annotations

import os
import random
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from annotate.models import Completion, User
from prefloop.jobs.models import Job
from prefloop.jobs.services import REAPED_ERROR, reap_stale_jobs
from rewards.models import RewardModel
from tests.factories import make_comparisons, make_project, make_user
from tests.jobs.conftest import manage, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOOD, BAD = ("great", "helpful", "clear"), ("rude", "wrong", "useless")


def voted_project(count: int = 40):
    """`count` comparisons whose first answer uses kind words, each with one imported vote for it."""
    from annotate.models import Vote

    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher], overlap_target=1)
    rng = random.Random(0)
    for comparison in make_comparisons(project, count):
        first, second = comparison.items.order_by("position")
        Completion.objects.filter(pk=first.completion_id).update(text=" ".join(rng.choice(GOOD) for _ in range(40)))
        Completion.objects.filter(pk=second.completion_id).update(text=" ".join(rng.choice(BAD) for _ in range(40)))
        Vote.objects.create(
            comparison=comparison,
            source=Vote.Source.IMPORTED,
            external_annotator="ext-1",
            shown_order=[first.completion_id, second.completion_id],
            choice="a",
            winner_id=first.completion_id,
            loser_id=second.completion_id,
        )
    return project, researcher


def test_a_reward_model_job_killed_mid_training_ends_failed_with_no_artifact(
    worker_env, start_process, settings, tmp_path
):
    from rewards.services import artifact_dir, request_training

    var_dir = tmp_path / "var"
    settings.PREFLOOP_REWARD_MODEL_DIR = var_dir / "reward-models"  # where the worker writes (PREFLOOP_VAR_DIR)
    project, researcher = voted_project()
    version, job = request_training(
        project=project, user=researcher, options={"batch_size": 4, "max_steps": 2000, "max_length": 128}
    )
    worker = start_process(
        manage("db_worker", "--no-reload", "--no-startup-delay", "--interval", "0.1"),
        {**worker_env, "PREFLOOP_VAR_DIR": str(var_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )

    def training_steps():
        job.refresh_from_db()
        return job.status == Job.Status.RUNNING and job.message.startswith("step ")

    wait_until(training_steps, timeout=240, proc=worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    version.refresh_from_db()
    assert version.status == RewardModel.Status.TRAINING  # what the dead worker left

    settings.PREFLOOP_JOB_HEARTBEAT_TIMEOUT = 2
    assert reap_stale_jobs(now=timezone.now() + timedelta(seconds=3)) == 1
    job.refresh_from_db()
    version.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.error == REAPED_ERROR and 0 < job.progress < 0.95
    assert version.status == RewardModel.Status.FAILED and f"training job {job.pk} failed" in version.error
    assert not version.is_current and version.artifact_path == ""
    final = artifact_dir(version)
    assert not final.exists()  # save_artifact renames a finished folder into place; none was finished
    leftovers = [
        p for p in Path(settings.PREFLOOP_REWARD_MODEL_DIR).rglob("*") if p.is_dir() and p.parent == final.parent
    ]
    assert all(p.name.startswith(".") for p in leftovers), leftovers
