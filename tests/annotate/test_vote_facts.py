"""The receivers' per-vote lookups (is auto-retrain on? which webhooks are active?) answered by the
vote's own statement on PostgreSQL (annotate.signals.VOTE_FACTS), with the answers the receivers'
own queries give."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from annotate.signals import VOTE_FACTS, register_vote_fact, vote_recorded
from prefloop.webhooks import events as ev
from prefloop.webhooks.models import Webhook
from prefloop.webhooks.receivers import _subscribed
from rewards import services as reward_services
from rewards.receivers import _auto_retrain_on
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db

# The receivers' own lookups (rewards.receivers._auto_retrain_on, prefloop.webhooks.receivers._subscribed).
LOOKUPS = ("WHERE project_id = %s AND auto_retrain", "SELECT events FROM webhooks_webhook")


@pytest.fixture
def voted():
    """vote(): one vote by a fresh annotator; returns (the signal's kwargs, the statements it ran)."""
    annotator = make_user("facts-voter")
    project = make_project(name="facts", annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    sent: list[dict] = []

    def listen(sender, **kwargs):
        sent.append(kwargs)

    vote_recorded.connect(listen, dispatch_uid="test-vote-facts")

    def vote(key, capture_on_commit):
        assignment = next_comparison(annotator=annotator, project=project).assignment
        with CaptureQueriesContext(connection) as queries, capture_on_commit(execute=True):
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                votes=[VoteInput(aspect="overall", choice="a")],
                idempotency_key=key,
            )
        return sent[-1], [q["sql"] for q in queries]

    try:
        yield project, vote
    finally:
        vote_recorded.disconnect(dispatch_uid="test-vote-facts")


def webhook(project, events, active=True):
    return Webhook.objects.create(
        project=project, url="http://127.0.0.1:9/hook", secret="s" * 32, events=events, active=active
    )


def test_the_apps_register_their_facts():
    assert set(VOTE_FACTS) >= {"auto_retrain", "webhook_events"}
    with pytest.raises(ValueError, match="identifier"):
        register_vote_fact("no such; name", "1")


@pytest.mark.postgres
def test_on_postgres_the_vote_statement_answers_and_the_receivers_do_not_query(
    voted, django_capture_on_commit_callbacks
):
    project, vote = voted
    sent, statements = vote("f1", django_capture_on_commit_callbacks)
    assert sent["facts"] == {"auto_retrain": False, "webhook_events": None}
    assert not [s for s in statements if any(lookup in s for lookup in LOOKUPS)]

    reward_services.update_reward_settings(project=project, auto_retrain=True)
    webhook(project, [ev.VOTES_MILESTONE])
    webhook(project, [ev.ROUND_LABELLED, "job.failed"])
    webhook(project, [ev.ROUND_LABELLED], active=False)
    webhook(make_project(name="elsewhere"), [ev.VOTES_MILESTONE])
    sent, statements = vote("f2", django_capture_on_commit_callbacks)
    assert sent["facts"]["auto_retrain"] is True
    assert sorted(json.loads(sent["facts"]["webhook_events"])) == sorted(
        [[ev.VOTES_MILESTONE], [ev.ROUND_LABELLED, "job.failed"]]
    )
    assert not [s for s in statements if any(lookup in s for lookup in LOOKUPS)]


@pytest.mark.parametrize(
    "hooks",
    [
        [],
        [([ev.VOTES_MILESTONE], True)],
        [([ev.VOTES_MILESTONE], False)],
        [(["job.failed"], True), ([ev.ROUND_LABELLED], False)],
        [(["job.failed"], True), ([ev.ROUND_LABELLED], True)],
    ],
)
def test_facts_and_the_receivers_own_queries_agree(voted, django_capture_on_commit_callbacks, hooks):
    project, vote = voted
    for events, active in hooks:
        webhook(project, events, active)
    sent, _ = vote("agree", django_capture_on_commit_callbacks)
    facts = sent["facts"]
    if connection.vendor != "postgresql":
        assert facts == {}  # the portable path: each receiver queries
        return
    for names in (ev.LABELING_EVENTS, ("job.failed",), (ev.ROUND_LABELLED,)):
        assert _subscribed(project.pk, names, facts) == _subscribed(project.pk, names)
    assert facts["auto_retrain"] == _auto_retrain_on(project.pk)
