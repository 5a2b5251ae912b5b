"""Pages that show a job say where it stands ("queued (n ahead)", "running 81 %") and keep polling it;
the Start-round form is disabled while a round is active."""

from __future__ import annotations

import re

import pytest

from annotate.models import User
from prefloop.jobs.models import Job
from rewards.models import RewardModel
from tests.factories import make_project, make_user
from training.models import Loop, Policy, Round

pytestmark = pytest.mark.django_db


@pytest.fixture
def project_and_researcher(client, tmp_path):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    client.force_login(researcher)
    return project, researcher


def rm_version(project, number: int, job: Job, status=RewardModel.Status.QUEUED) -> RewardModel:
    return RewardModel.objects.create(project=project, version=number, base_model="tiny", status=status, job_id=job.pk)


def fragment(html: str, element_id: str) -> str:
    match = re.search(rf'<div id="{element_id}"[^>]*>', html)
    assert match, f"no #{element_id}"
    return match.group(0)


def test_the_reward_model_page_shows_queue_position_and_live_progress_from_the_job_row(client, project_and_researcher):
    project, _ = project_and_researcher
    running = Job.objects.create(
        kind="train_reward_model",
        project=project,
        status=Job.Status.RUNNING,
        progress=0.81,
        message="step 81/100 loss 0.6000",
    )
    waiting = Job.objects.create(kind="train_reward_model", project=project)
    rm_version(project, 1, running, status=RewardModel.Status.TRAINING)
    rm_version(project, 2, waiting)
    page = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    assert "running 81 % · step 81/100" in page and "queued (1 ahead)" in page
    head = fragment(page, "rm-versions")
    assert 'hx-trigger="every 2s"' in head and 'hx-select="#rm-versions"' in head and "htmx.min.js" in page

    # The worker moves on; the next poll of the same URL shows it (no stale field, no broadcast needed).
    Job.objects.filter(pk=running.pk).update(progress=0.9, message="step 90/100")
    assert "running 90 % · step 90/100" in client.get(f"/projects/{project.pk}/reward-models/").content.decode()


def test_the_reward_model_page_stops_polling_when_no_version_is_training(client, project_and_researcher):
    project, _ = project_and_researcher
    done = Job.objects.create(kind="train_reward_model", project=project, status=Job.Status.SUCCEEDED, progress=1.0)
    RewardModel.objects.create(
        project=project,
        version=1,
        base_model="tiny",
        status=RewardModel.Status.READY,
        artifact_path="/x/v1",
        job_id=done.pk,
        metrics={"accuracy": 0.6},
    )
    page = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    assert "hx-trigger" not in fragment(page, "rm-versions") and "queued (" not in page and "running" not in page


def loop_with_policy(project, tmp_path) -> Policy:
    policy = Policy.objects.create(
        project=project, version=1, method="base", status="ready", artifact_path=str(tmp_path)
    )
    Loop.objects.create(project=project, reference=policy, current=policy)
    return policy


def test_the_loop_page_says_queued_with_the_jobs_ahead_and_disables_start_round(
    client, project_and_researcher, tmp_path
):
    project, _ = project_and_researcher
    policy = loop_with_policy(project, tmp_path)
    Job.objects.create(kind="training.sample_round", status=Job.Status.RUNNING)  # another project's, same queue
    job = Job.objects.create(kind="training.sample_round", project=project)
    Round.objects.create(project=project, number=1, method="dpo", state="sampling", policy=policy, job_id=job.pk)
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert "queued (1 ahead)" in page
    start = page[page.index('id="loop-start"') : page.index("</section>", page.index('id="loop-start"'))]
    assert re.search(r'<fieldset class="loop-fields" disabled', start) and "round 1 must finish" in start
    assert f'hx-get="/projects/{project.pk}/loop/status/?part=start"' in start
    # The polled fragment is the same section.
    part = client.get(f"/projects/{project.pk}/loop/status/?part=start").content.decode()
    assert 'id="loop-start"' in part and "disabled" in part


def test_start_round_is_enabled_and_not_polled_without_an_active_round(client, project_and_researcher, tmp_path):
    project, _ = project_and_researcher
    loop_with_policy(project, tmp_path)
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    start = page[page.index('id="loop-start"') : page.index("</section>", page.index('id="loop-start"'))]
    assert "disabled" not in start and "hx-trigger" not in start and "Start round" in start
