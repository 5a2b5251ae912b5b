"""The dashboard websocket: only the project's researchers (and admins) connect; votes push updates."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from annotate.models import User
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from frontend.routing import websocket_urlpatterns
from tests.async_helpers import run_async
from tests.factories import make_comparisons, make_project, make_user

# Transactional: votes broadcast on commit, and the consumer reads through its own thread.
pytestmark = pytest.mark.django_db(transaction=True)


def communicator(project_id: int, user=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/projects/{project_id}/progress/")
    if user is not None:
        comm.scope["user"] = user
    return comm


run = run_async


async def connected(comm) -> bool:
    ok, _ = await comm.connect()
    return ok


def test_anonymous_and_non_researchers_are_refused():
    from django.contrib.auth.models import AnonymousUser

    annotator = make_user()
    stranger = make_user(role=User.Role.RESEARCHER)
    project = make_project(annotators=[annotator])

    async def attempts():
        results = []
        for user in (None, AnonymousUser(), annotator, stranger):
            comm = communicator(project.pk, user)
            results.append(await connected(comm))
            await comm.disconnect()
        return results

    assert run(attempts) == [False, False, False, False]


def test_researcher_gets_the_fragment_on_connect_and_again_after_a_vote():
    researcher = make_user(role=User.Role.RESEARCHER)
    annotator = make_user()
    project = make_project(annotators=[annotator], researchers=[researcher])
    make_comparisons(project, 2)

    def cast_vote():
        assignment = next_comparison(annotator=annotator, project=project).assignment
        record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            votes=[VoteInput(aspect="overall", choice="b")],
            idempotency_key="live-1",
        )

    async def session():
        comm = communicator(project.pk, researcher)
        assert await connected(comm)
        first = json.loads(await comm.receive_from(timeout=5))
        await sync_to_async(cast_vote)()
        second = json.loads(await comm.receive_from(timeout=5))
        await comm.disconnect()
        return first, second

    first, second = run(session)
    assert first["target"] == "#live-progress" and first["swap"] == "outerHTML"
    assert '<span id="votes-done">0</span>' in first["content"]
    assert '<span id="votes-done">1</span>' in second["content"]
