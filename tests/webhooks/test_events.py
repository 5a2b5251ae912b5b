"""Events emitted by the real code paths: a round's transitions, jobs ending, votes reaching
milestones, a round fully labelled; delivered to a receiver on 127.0.0.1 and checked there."""

from __future__ import annotations

import pytest
from django.db import transaction

from annotate.models import Comparison, User
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from prefloop.jobs.services import run_job_inline
from prefloop.webhooks import services
from prefloop.webhooks.models import Delivery
from tests.factories import make_comparisons, make_project, make_user
from tests.webhooks.receiver import signature_ok

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people():
    return make_user("res-ev", role=User.Role.RESEARCHER), make_user("ann-ev")


@pytest.fixture
def project(people):
    researcher, annotator = people
    return make_project(name="events", researchers=[researcher], annotators=[annotator], overlap_target=1)


def events_of(r, secret: str) -> list[dict]:
    assert all(signature_ok(secret, g.body, g.headers["x-prefloop-signature"]) for g in r.received)
    return [g.json for g in r.received]


def _loop_round(project):
    from training.models import Loop, Policy, Round

    policy = Policy.objects.create(
        project=project,
        version=1,
        name="base",
        method=Policy.Method.BASE,
        status=Policy.Status.READY,
        artifact_path="/nonexistent/policy",
    )
    Loop.objects.create(project=project, reference=policy, current=policy)
    return Round.objects.create(
        project=project,
        number=1,
        method=Round.Method.DPO,
        policy=policy,
        history=[{"state": "sampling", "at": "2026-01-01T00:00:00+00:00", "job_id": None}],
    )


def test_a_round_start_and_its_cancel_are_sent_as_state_changes(project, receiver):
    from training.services import cancel_round, fail_round

    r = receiver()
    webhook = services.webhook_create(project=project, url=r.url(), events=["round.state_changed"])
    round_ = _loop_round(project)
    cancel_round(round_=round_)  # the real transition, in its transaction
    second = _second_round(project, round_)
    fail_round(round_=second, reason="sampling failed: out of memory")
    got = [e["data"]["round"] for e in events_of(r, webhook.secret)]
    assert [(g["number"], g["previous_state"], g["state"]) for g in got] == [
        (1, None, "sampling"),
        (1, "sampling", "cancelled"),
        (2, None, "labeling"),
        (2, "labeling", "failed"),
    ]
    assert (
        got[1]["reason"].startswith("cancelled by a researcher")
        and got[3]["reason"] == "sampling failed: out of memory"
    )
    assert {e["event"] for e in events_of(r, webhook.secret)} == {"round.state_changed"}


def _second_round(project, first):
    from training.models import Round

    return Round.objects.create(
        project=project, number=2, method=Round.Method.DPO, policy=first.policy, state=Round.State.LABELING
    )


def test_a_transition_rolled_back_sends_nothing(project, receiver):
    from training.services import cancel_round

    r = receiver()
    services.webhook_create(project=project, url=r.url(), events=["round.state_changed"])
    round_ = _loop_round(project)
    with pytest.raises(RuntimeError), transaction.atomic():
        cancel_round(round_=round_)
        raise RuntimeError("the caller's transaction fails after the transition")
    round_.refresh_from_db()
    assert round_.state == "sampling"
    assert [g.json["data"]["round"]["state"] for g in r.received] == ["sampling"]


def test_jobs_that_succeed_or_fail_are_sent_and_webhook_jobs_are_not(project, receiver):
    r = receiver()
    webhook = services.webhook_create(project=project, url=r.url(), events=["job.succeeded", "job.failed"])
    ok = run_job_inline("selftest.sleep", {"seconds": 0, "steps": 1}, project=project)
    bad = run_job_inline("selftest.sleep", {"seconds": 0, "steps": 2, "fail": True}, project=project)
    run_job_inline("selftest.sleep", {"seconds": 0, "steps": 1})  # no project: nobody to tell
    got = events_of(r, webhook.secret)
    assert [(e["event"], e["data"]["job"]["id"], e["data"]["job"]["status"]) for e in got] == [
        ("job.succeeded", ok.pk, "succeeded"),
        ("job.failed", bad.pk, "failed"),
    ]
    assert got[1]["data"]["job"]["error"].startswith("RuntimeError: selftest failure requested")
    assert got[0]["data"]["job"]["kind"] == "selftest.sleep"


def test_an_inactive_webhook_or_an_unsubscribed_event_sends_nothing(project, receiver):
    r = receiver()
    services.webhook_create(project=project, url=r.url(), events=["job.failed"])
    services.webhook_create(project=project, url=r.url(), events=["job.succeeded"], active=False)
    run_job_inline("selftest.sleep", {"seconds": 0, "steps": 1}, project=project)
    assert r.received == [] and not Delivery.objects.exists()


def _vote(annotator, project, n: int) -> None:
    for _ in range(n):
        assignment = next_comparison(annotator=annotator, project=project).assignment
        record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            votes=[VoteInput(aspect="overall", choice="a")],
            idempotency_key=f"k-{assignment.pk}",
        )


def test_vote_milestones_every_n_judgements_and_a_round_fully_labelled(project, people, receiver):
    _, annotator = people
    for comparison in make_comparisons(project, 5):
        Comparison.objects.filter(pk=comparison.pk).update(round=1)
    r = receiver()
    webhook = services.webhook_create(
        project=project, url=r.url(), milestone_every=2, events=["labeling.votes_milestone", "labeling.round_labelled"]
    )
    _vote(annotator, project, 3)
    assert [(e["event"], e["data"]) for e in events_of(r, webhook.secret)] == [
        ("labeling.votes_milestone", {"judgements": 2, "milestone": 2, "every": 2})
    ]
    _vote(annotator, project, 2)
    got = [(e["event"], e["data"]) for e in events_of(r, webhook.secret)]
    assert got[1:] == [
        ("labeling.votes_milestone", {"judgements": 4, "milestone": 4, "every": 2}),
        ("labeling.round_labelled", {"round": {"number": 1, "comparisons": 5}}),
    ]
    webhook.refresh_from_db()
    assert webhook.last_milestone == 4


def test_the_same_event_emitted_twice_is_delivered_once(project, receiver):
    r = receiver()
    services.webhook_create(project=project, url=r.url(), events=["labeling.round_labelled"])
    for _ in range(2):
        services.emit(
            project, "labeling.round_labelled", {"round": {"number": 7, "comparisons": 1}}, key="round_labelled:7"
        )
    assert len(r.received) == 1 and Delivery.objects.count() == 1


def test_a_new_webhook_counts_milestones_from_now(project, people, receiver):
    _, annotator = people
    make_comparisons(project, 3)
    _vote(annotator, project, 2)
    r = receiver()
    webhook = services.webhook_create(
        project=project, url=r.url(), milestone_every=2, events=["labeling.votes_milestone"]
    )
    assert webhook.last_milestone == 2
    _vote(annotator, project, 1)
    assert r.received == []  # 3 judgements: the next milestone is 4


def test_a_failing_receiver_never_breaks_the_job_that_emitted(project, receiver, settings):
    settings.PREFLOOP_WEBHOOK_MAX_ATTEMPTS = 1
    r = receiver([(500, {}, b"")])
    services.webhook_create(project=project, url=r.url(), events=["job.succeeded"])
    job = run_job_inline("selftest.sleep", {"seconds": 0, "steps": 1}, project=project)
    assert job.status == "succeeded"
    assert Delivery.objects.get().status == "failed"
