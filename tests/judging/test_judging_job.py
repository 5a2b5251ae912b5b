"""A judging job with a real tiny judge (always "A"): verdicts stored apart, position swap handled, annotators see nothing."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Comparison, Membership, User, Vote
from judging.models import JudgeVerdict
from judging.services import select_comparisons, update_judge_settings
from prefloop.jobs.models import Job
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote
from tests.training.judge_models import letter_judge, save_judge
from training.models import Policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged_project(tmp_path, settings):
    settings.PREFLOOP_JOB_BACKEND = "immediate"
    researcher = make_user(role=User.Role.RESEARCHER)
    annotator = make_user()
    project = make_project(researchers=[researcher], annotators=[annotator], aspects=["helpfulness", "harmlessness"])
    folder = save_judge(*letter_judge("A"), tmp_path / "judge")
    policy = Policy.objects.create(
        project=project,
        version=1,
        method=Policy.Method.BASE,
        status=Policy.Status.READY,
        base_model=str(folder),
        artifact_path=str(folder),
        name="always-A",
    )
    update_judge_settings(
        project=project,
        data={"judge": policy.pk, "principles": {"harmlessness": "Prefer the harmless answer."}, "batch_size": 3},
    )
    return project, researcher, annotator, policy


def test_rest_job_judges_both_orders_and_stores_verdicts_apart(judged_project, api, django_capture_on_commit_callbacks):
    project, researcher, annotator, policy = judged_project
    comparisons = make_comparisons(project, 5)
    comparisons[1].round = 2
    comparisons[1].save()
    human_vote(comparisons[0], annotator, "first", aspect="helpfulness")
    votes_before = list(Vote.objects.values_list("pk", "choice"))
    counters = list(Comparison.objects.order_by("pk").values_list("votes_done", "is_complete"))

    api = api(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project.pk}/judge/run/", {"round": 2}, format="json")
    assert response.status_code == 202 and response.json()["comparisons"] == 1
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.status == "succeeded", job.error
    assert job.result["verdicts"] == 2 and job.result["inconsistent"] == 2  # one pair × two aspects
    assert JudgeVerdict.objects.count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/projects/{project.pk}/judge/run/", {}, format="json")  # the rest, not the judged one
    assert response.status_code == 202 and response.json()["comparisons"] == 4
    verdicts = JudgeVerdict.objects.filter(judge=policy)
    assert verdicts.count() == 10
    for verdict in verdicts:  # "A" in both orders: the first answer, then the second → a flagged tie
        assert verdict.verdict == "tie" and not verdict.consistent
        assert verdict.order1[0] > 0.99 and verdict.order2[0] > 0.99
        assert verdict.judge_label == "policy v1 (always-A)"
    versions = set(verdicts.values_list("aspect", "prompt_version").distinct())
    assert len(versions) == 2 and len({v for _, v in versions}) == 2  # principles change the prompt version
    assert list(Vote.objects.values_list("pk", "choice")) == votes_before  # never a vote
    assert list(Comparison.objects.order_by("pk").values_list("votes_done", "is_complete")) == counters


def test_annotators_never_see_judge_verdicts(judged_project, api, client):
    project, _, annotator, _ = judged_project
    make_comparisons(project, 2)
    call_command("judge", "--project", str(project.pk))
    assert JudgeVerdict.objects.count() == 4
    api = api(annotator)
    client.force_login(annotator)
    assert api.get(f"/api/projects/{project.pk}/judge/agreement/").status_code == 404
    assert api.get(f"/api/projects/{project.pk}/judge/").status_code == 404
    assert api.post(f"/api/projects/{project.pk}/judge/run/", {}, format="json").status_code == 404
    payload = api.post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assert payload.status_code in (200, 201), payload.content
    payload = payload.content.decode()
    page = client.get(f"/projects/{project.pk}/annotate/").content.decode()
    for text in (payload, page):
        assert "always-A" not in text and "policy v1" not in text and "consistent" not in text and "order1" not in text
    my_votes = api.get(f"/api/projects/{project.pk}/my-votes/")
    assert my_votes.status_code == 200 and "always-A" not in my_votes.content.decode()


def test_command_and_settings_errors_name_the_field(judged_project):
    project, *_ = judged_project
    with pytest.raises(CommandError, match="nothing to judge"):
        call_command("judge", "--project", str(project.pk))
    from judging.errors import InvalidJudgeSettings

    with pytest.raises(InvalidJudgeSettings, match="principles.style"):
        update_judge_settings(project=project, data={"principles": {"style": "x"}})
    with pytest.raises(InvalidJudgeSettings, match="batch_size"):
        update_judge_settings(project=project, data={"batch_size": 10_000})
    with pytest.raises(InvalidJudgeSettings, match="answer_b"):
        update_judge_settings(project=project, data={"user_template": "{question} {answer_a}"})
    other = make_project()
    foreign = Policy.objects.create(project=other, version=1, method="base", status="ready", artifact_path="/x")
    with pytest.raises(InvalidJudgeSettings, match="judge"):
        update_judge_settings(project=project, data={"judge": foreign.pk})


def test_scope_bound_is_enforced(judged_project, settings):
    project, *_ = judged_project
    make_comparisons(project, 3)
    settings.PREFLOOP_LIMITS = {"judge.comparisons": 2}
    from judging.errors import InvalidJudgeSettings

    with pytest.raises(InvalidJudgeSettings, match="judge.comparisons"):
        select_comparisons(project)
    assert Membership.objects.filter(project=project).count() == 2


def test_scopes_import_and_created_before_and_cancel(judged_project, client, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from annotate.models import DataImport
    from judging.services import JudgingStopped, run_judging, scope_ids

    project, researcher, _, _ = judged_project
    old, new, other = make_comparisons(project, 3)
    Comparison.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    record = DataImport.objects.create(
        project=project, source="x.jsonl", format="pairs-jsonl", created_ids={"comparisons": [new.pk]}
    )
    assert scope_ids(project, {"import": record.pk}) == [new.pk]
    assert scope_ids(project, {"created_before": (timezone.now() - timedelta(days=1)).isoformat()}) == [old.pk]
    from judging.errors import InvalidJudgeSettings

    with pytest.raises(InvalidJudgeSettings, match="scope.created_before"):
        scope_ids(project, {"created_before": "yesterday"})
    with pytest.raises(InvalidJudgeSettings, match="scope.colour"):
        scope_ids(project, {"colour": 1})
    with pytest.raises(JudgingStopped):
        run_judging(project_id=project.pk, comparison_ids=[old.pk, new.pk, other.pk], should_stop=lambda: True)
    assert not JudgeVerdict.objects.exists()
    client.force_login(researcher)  # the Quality tab's button: round 0 holds all three
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/projects/{project.pk}/quality/judge/run/", {"round": "0"})
    assert response.status_code == 302
    assert JudgeVerdict.objects.filter(aspect="helpfulness").count() == 3
    assert Job.objects.get().status == "succeeded"
