"""Websocket progress: only people who may see the job connect; they get live updates."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from annotate.models import User
from prefloop.jobs.context import JobContext
from prefloop.jobs.models import Job
from prefloop.jobs.routing import websocket_urlpatterns
from tests.async_helpers import run_async
from tests.factories import make_project, make_user

# The consumer reads the database from another thread, so the rows must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


def communicator(path: str, user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, path)
    comm.scope["user"] = user
    return comm


@pytest.fixture
def setup():
    researcher = make_user(role=User.Role.RESEARCHER)
    annotator = make_user()
    project = make_project(annotators=[annotator], researchers=[researcher])
    job = Job.objects.create(kind="selftest.sleep", project=project, status="running")
    return researcher, annotator, project, job


@pytest.mark.parametrize("who", ["anonymous", "annotator", "stranger"])
def test_people_who_may_not_see_the_job_are_refused(setup, who):
    researcher, annotator, project, job = setup
    user = {"anonymous": AnonymousUser(), "annotator": annotator, "stranger": make_user(role=User.Role.RESEARCHER)}[who]

    async def connect():
        comm = communicator(f"/ws/jobs/{job.pk}/", user)
        connected, code = await comm.connect()
        await comm.disconnect()
        return connected, code

    assert run_async(connect) == (False, 4404)


def test_a_researcher_receives_progress_as_the_job_reports_it(setup):
    researcher, annotator, project, job = setup
    ctx = JobContext(job)

    async def watch():
        comm = communicator(f"/ws/jobs/{job.pk}/", researcher)
        project_comm = communicator(f"/ws/jobs/project/{project.pk}/", researcher)
        assert (await comm.connect())[0] and (await project_comm.connect())[0]
        first = await comm.receive_json_from(timeout=5)
        await database_sync_to_async(ctx.progress)(0.25, "loading votes")
        update = await comm.receive_json_from(timeout=5)
        project_update = await project_comm.receive_json_from(timeout=5)
        await comm.disconnect()
        await project_comm.disconnect()
        return first, update, project_update

    first, update, project_update = run_async(watch)
    assert first == {
        "type": "job.progress",
        "job": {"id": job.pk, "kind": "selftest.sleep", "status": "running", "progress": 0.0, "message": ""},
    }
    assert update["job"]["progress"] == 0.25 and update["job"]["message"] == "loading votes"
    assert project_update == update


def test_annotators_may_not_watch_a_projects_jobs(setup):
    researcher, annotator, project, job = setup

    async def connect():
        comm = communicator(f"/ws/jobs/project/{project.pk}/", annotator)
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert run_async(connect) is False
