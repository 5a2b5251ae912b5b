"""REST API: who sees which job, cancelling, and reaping on read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import User
from prefloop.jobs.models import Job
from prefloop.jobs.services import REAPED_ERROR
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    creator = make_user(role=User.Role.RESEARCHER)
    researcher = make_user(role=User.Role.RESEARCHER)
    annotator = make_user()
    stranger = make_user(role=User.Role.RESEARCHER)
    admin = make_user(role=User.Role.ADMIN)
    project = make_project(annotators=[annotator], researchers=[researcher])
    job = Job.objects.create(kind="selftest.sleep", params={"seconds": 1}, project=project, created_by=creator)
    return dict(
        creator=creator,
        researcher=researcher,
        annotator=annotator,
        stranger=stranger,
        admin=admin,
        project=project,
        job=job,
    )


@pytest.mark.parametrize("who", ["creator", "researcher", "admin"])
def test_creator_researchers_and_admins_see_a_job(api, people, who):
    client, job = api(people[who]), people["job"]
    detail = client.get(f"/api/jobs/{job.pk}/")
    assert detail.status_code == 200
    assert detail.json()["status"] == "queued" and detail.json()["kind"] == "selftest.sleep"
    listed = client.get(f"/api/jobs/?project={people['project'].pk}").json()
    assert [row["id"] for row in listed["results"]] == [job.pk]


@pytest.mark.parametrize("who", ["annotator", "stranger"])
def test_annotators_and_strangers_get_404_and_an_empty_list(api, people, who):
    client, job = api(people[who]), people["job"]
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 404
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 404
    assert client.get(f"/api/jobs/?project={people['project'].pk}").json()["results"] == []
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_anonymous_requests_are_refused(api, people):
    assert api().get(f"/api/jobs/{people['job'].pk}/").status_code == 401


def test_a_job_without_project_is_visible_to_its_creator_only(api, people):
    mine = Job.objects.create(kind="selftest.sleep", created_by=people["stranger"])
    assert api(people["stranger"]).get(f"/api/jobs/{mine.pk}/").status_code == 200
    assert api(people["researcher"]).get(f"/api/jobs/{mine.pk}/").status_code == 404
    assert [r["id"] for r in api(people["stranger"]).get("/api/jobs/").json()["results"]] == [mine.pk]


def test_a_researcher_cancels_a_queued_job(api, people):
    response = api(people["researcher"]).post(f"/api/jobs/{people['job'].pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["cancel_requested"] is True


def test_reading_a_job_whose_worker_died_shows_it_failed(api, people, settings):
    settings.PREFLOOP_JOB_HEARTBEAT_TIMEOUT = 30
    job = people["job"]
    old = timezone.now() - timedelta(minutes=5)
    Job.objects.filter(pk=job.pk).update(status="running", started_at=old, heartbeat_at=old, progress=0.3)
    body = api(people["creator"]).get(f"/api/jobs/{job.pk}/").json()
    assert body["status"] == "failed" and body["error"] == REAPED_ERROR and body["progress"] == 0.3


def test_list_filters_by_status(api, people):
    Job.objects.create(kind="selftest.sleep", project=people["project"], status="succeeded")
    rows = api(people["admin"]).get("/api/jobs/?status=succeeded").json()["results"]
    assert [row["status"] for row in rows] == ["succeeded"]
    assert api(people["admin"]).get("/api/jobs/?project=x").status_code == 400
