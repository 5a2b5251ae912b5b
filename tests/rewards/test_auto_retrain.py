"""Automatic retraining: one job when every comparison of a round reaches its overlap target, never twice."""

from __future__ import annotations

import pytest

from annotate.models import Comparison
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from rewards import services
from rewards.models import RetrainTrigger, RewardModel
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def round_project(model_dir):
    annotator = make_user("voter")
    project = make_project(name="auto", annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    return project, annotator


def vote_next(annotator, project, key):
    assignment = next_comparison(annotator=annotator, project=project).assignment
    return record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        votes=[VoteInput(aspect="overall", choice="a")],
        idempotency_key=key,
    )


def test_the_last_vote_of_a_round_enqueues_one_training_job(round_project, django_capture_on_commit_callbacks):
    from prefloop.jobs.models import Job

    project, annotator = round_project
    services.update_reward_settings(project=project, auto_retrain=True)
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            vote_next(annotator, project, f"k{i}")
        expected = 1 if i == 2 else 0
        assert RewardModel.objects.filter(project=project).count() == expected
    version = RewardModel.objects.get(project=project)
    assert version.trigger == "auto:round-0" and version.status == RewardModel.Status.QUEUED
    assert Job.objects.filter(kind="train_reward_model", params={"reward_model_id": version.pk}).count() == 1
    assert RetrainTrigger.objects.get(project=project, round=0).reward_model == version


def test_a_round_triggers_only_once(round_project, django_capture_on_commit_callbacks):
    from annotate.signals import vote_recorded

    project, annotator = round_project
    services.update_reward_settings(project=project, auto_retrain=True)
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            result = vote_next(annotator, project, f"k{i}")
    for _ in range(2):  # the signal again (a retried request, a second worker): nothing new
        vote_recorded.send(sender=None, assignment=result.assignment)
    assert services.maybe_auto_retrain(project=project, round_number=0) is None
    assert RewardModel.objects.filter(project=project).count() == 1


def test_nothing_happens_with_auto_retrain_off(round_project, django_capture_on_commit_callbacks):
    project, annotator = round_project
    for i in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            vote_next(annotator, project, f"k{i}")
    assert Comparison.objects.filter(project=project, is_complete=True).count() == 3
    assert not RewardModel.objects.exists()


def test_an_open_round_does_not_trigger(round_project):
    project, _ = round_project
    services.update_reward_settings(project=project, auto_retrain=True)
    assert services.maybe_auto_retrain(project=project, round_number=0) is None
    assert not RewardModel.objects.exists()
