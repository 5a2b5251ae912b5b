"""The reward-model guard's state machine without training: verdicts, guarded → override → policy_update, DPO's warning."""

from __future__ import annotations

from io import StringIO

import pytest

from annotate.models import User
from prefloop.jobs.models import Job
from rewards.ml.metrics import wilson_interval
from rewards.models import RewardModel
from tests.factories import make_project, make_user
from training import services
from training.errors import RoundStateError
from training.models import Loop, Policy, Round

pytestmark = pytest.mark.django_db


def metrics(correct: int, pairs: int) -> dict:
    return {"accuracy": correct / pairs, "pairs": pairs, "accuracy_ci": list(wilson_interval(correct, pairs))}


def test_the_guard_passes_only_above_chance_on_enough_held_out_pairs():
    assert services.reward_model_guard(metrics(32, 40), min_pairs=20)["passed"]  # [0.65, 0.90]
    issue = services.reward_model_guard(metrics(23, 40), min_pairs=20)  # the issue's 0.575 on 40 pairs
    assert not issue["passed"] and "0.575 with 95 % interval [0.422, 0.715] includes 0.5 (chance)" in issue["reason"]
    small = services.reward_model_guard(metrics(10, 10), min_pairs=20)  # above chance, but 10 pairs
    assert (
        not small["passed"]
        and small["reason"] == "10 held-out pairs, fewer than the minimum of 20 (min_held_out_pairs)"
    )
    worse = services.reward_model_guard(metrics(5, 40), min_pairs=20)
    assert not worse["passed"] and "lies below 0.5" in worse["reason"]
    assert not services.reward_model_guard({}, min_pairs=0)["passed"]  # no held-out set: nothing is known
    # An older version without a stored interval gets one computed from accuracy and pairs.
    assert services.reward_model_guard({"accuracy": 0.8, "pairs": 40}, min_pairs=20)["accuracy_ci"] == pytest.approx(
        list(wilson_interval(32, 40))
    )


@pytest.fixture
def waiting(settings, tmp_path):
    """A round of `method` whose reward-model job just succeeded, on a version with the given held-out metrics."""
    settings.PREFLOOP_JOB_BACKEND = "db"
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    policy = Policy.objects.create(
        project=project, version=1, method="base", status="ready", artifact_path=str(tmp_path)
    )
    Loop.objects.create(project=project, reference=policy, current=policy)

    def make(method: str, held_out: dict) -> Round:
        version = RewardModel.objects.filter(project=project).count() + 1
        reward_model = RewardModel.objects.create(
            project=project,
            version=version,
            base_model="tiny",
            status="ready",
            artifact_path=str(tmp_path / f"rm{version}"),
            metrics=held_out,
        )
        job = Job.objects.create(kind="train_reward_model", status="succeeded", project=project)
        round_ = Round.objects.create(
            project=project,
            number=version,
            method=method,
            state="reward_model",
            policy=policy,
            reward_model=reward_model,
            job_id=job.pk,
            params={"min_held_out_pairs": 20},
            history=[{"state": "reward_model", "at": "", "job_id": job.pk}],
        )
        services.job_finished(job=job)
        round_.refresh_from_db()
        return round_

    return project, researcher, make


@pytest.mark.parametrize("method", ["ppo", "best_of_n"])
def test_a_chance_level_reward_model_holds_ppo_and_best_of_n(waiting, method):
    project, _, make = waiting
    round_ = make(method, metrics(23, 40))
    assert round_.state == Round.State.GUARDED and round_.job_id is None and "includes 0.5" in round_.reason
    assert round_.reward_model.is_current  # the version is recorded and current; only the policy waits
    assert not Job.objects.filter(kind="training.update_policy").exists()
    with pytest.raises(RoundStateError, match="is guarded, not policy_update"):
        services.run_update(round_id=round_.pk)
    # A guarded round is active: the database keeps it the project's only one.
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Round.objects.create(project=project, number=99, method="dpo", state="sampling", policy=round_.policy)


def test_a_good_reward_model_lets_ppo_go_on(waiting):
    project, _, make = waiting
    round_ = make("ppo", metrics(32, 40))
    assert round_.state == Round.State.POLICY_UPDATE and round_.metrics["reward_model"]["guard"]["passed"]
    assert Job.objects.get(pk=round_.job_id).kind == "training.update_policy"


def test_dpo_goes_on_past_the_guard_with_a_warning(waiting):
    project, _, make = waiting
    round_ = make("dpo", metrics(23, 40))
    assert round_.state == Round.State.POLICY_UPDATE
    guard = round_.metrics["reward_model"]["guard"]
    assert not guard["passed"] and guard["warning"].startswith("DPO goes on") and round_.history[-1]["warning"]


def test_the_loop_tab_shows_the_guard_and_its_button_overrides_it(waiting, client):
    project, researcher, make = waiting
    round_ = make("ppo", metrics(23, 40))
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert "waits at the guard" in page and "[0.422, 0.715]" in page and "on 40 held-out pairs" in page
    response = client.post(f"/projects/{project.pk}/loop/rounds/{round_.pk}/override-guard/")
    assert response.status_code == 302
    round_.refresh_from_db()
    assert round_.state == Round.State.POLICY_UPDATE and round_.history[-1]["by"] == "res"
    assert (
        round_.history[-1]["job_id"] == round_.job_id
        and Job.objects.get(pk=round_.job_id).kind == "training.update_policy"
    )
    assert "guard overridden by res" in client.get(f"/projects/{project.pk}/loop/").content.decode()


def test_the_override_is_refused_unless_the_round_is_guarded(waiting, api):
    project, researcher, make = waiting
    round_ = make("ppo", metrics(32, 40))
    response = api(researcher).post(f"/api/rounds/{round_.pk}/override-guard/", {}, format="json")
    assert response.status_code == 409 and "not waiting at the guard" in response.json()["detail"]
    outsider = make_user("res2", role=User.Role.RESEARCHER)
    assert api(outsider).post(f"/api/rounds/{round_.pk}/override-guard/", {}, format="json").status_code == 404


def test_run_round_says_why_a_round_waits_and_overrides_on_request(waiting):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    project, _, make = waiting
    round_ = make("best_of_n", metrics(10, 10))
    with pytest.raises(CommandError, match="waits at the guard: .*fewer than the minimum.*--override-guard"):
        call_command("run_round", "--project", str(project.pk), "--enqueue", stdout=StringIO(), stderr=StringIO())
    out = StringIO()
    call_command(
        "run_round", "--project", str(project.pk), "--override-guard", "--enqueue", stdout=out, stderr=StringIO()
    )
    round_.refresh_from_db()
    assert round_.state == Round.State.POLICY_UPDATE and "guard overridden" in out.getvalue()
    assert round_.history[-1]["by"] == "manage.py run_round --override-guard"


def test_a_guarded_round_can_be_cancelled_and_the_next_one_started(waiting):
    project, researcher, make = waiting
    round_ = make("ppo", metrics(23, 40))
    services.cancel_round(round_=round_, user=researcher)
    round_.refresh_from_db()
    assert round_.state == Round.State.CANCELLED and "during guarded" in round_.reason
    assert not Round.objects.filter(project=project, state__in=Round.ACTIVE).exists()
