"""The Webhooks page and REST API: researchers of the project only, CSRF, the secret shown once."""

from __future__ import annotations

import pytest
from django.test import Client

from annotate.models import User
from prefloop.webhooks import services
from prefloop.webhooks.models import Delivery, Webhook
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    researcher = make_user("res-w", role=User.Role.RESEARCHER)
    annotator = make_user("ann-w")
    stranger = make_user("res-other", role=User.Role.RESEARCHER)
    project = make_project(name="webhooked", researchers=[researcher], annotators=[annotator])
    make_project(name="other", researchers=[stranger])
    return project, researcher, annotator, stranger


def client_for(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


FORM = {
    "url": "https://hooks.example.org/prefloop",
    "events": ["job.failed", "round.state_changed"],
    "name": "CI",
    "active": "on",
    "milestone_every": "100",
}


def test_a_researcher_adds_a_webhook_and_sees_the_secret_once(world):
    project, researcher, _, _ = world
    client = client_for(researcher)
    page = client.post(f"/projects/{project.pk}/webhooks/", FORM)
    assert page.status_code == 200
    webhook = Webhook.objects.get()
    assert (webhook.url, webhook.events, webhook.name, webhook.active) == (
        FORM["url"],
        ["round.state_changed", "job.failed"],
        "CI",
        True,
    )
    assert webhook.secret in page.content.decode()
    again = client.get(f"/projects/{project.pk}/webhooks/").content.decode()
    assert webhook.secret not in again and webhook.masked_secret in again and FORM["url"] in again


def test_a_bad_url_is_refused_with_the_field_named_and_nothing_written(world):
    project, researcher, _, _ = world
    page = client_for(researcher).post(f"/projects/{project.pk}/webhooks/", {**FORM, "url": "http://169.254.169.254/"})
    assert page.status_code == 400 and "link-local address" in page.content.decode()
    assert 'aria-invalid="true"' in page.content.decode() and not Webhook.objects.exists()
    page = client_for(researcher).post(f"/projects/{project.pk}/webhooks/", {**FORM, "events": []})
    assert page.status_code == 400 and "choose at least one event" in page.content.decode()


def test_edit_rotate_test_and_delete(world, settings):
    settings.PREFLOOP_JOB_BACKEND = "db"  # queued, not sent: nothing listens in this test
    project, researcher, _, _ = world
    webhook = services.webhook_create(project=project, url=FORM["url"], events=["job.failed"])
    client = client_for(researcher)
    url = f"/projects/{project.pk}/webhooks/{webhook.pk}/"
    assert client.post(url, {**FORM, "action": "save", "active": ""}).status_code == 302
    webhook.refresh_from_db()
    assert not webhook.active and webhook.events == ["round.state_changed", "job.failed"]
    old = webhook.secret
    page = client.post(url, {"action": "rotate"})
    webhook.refresh_from_db()
    assert webhook.secret != old and webhook.secret in page.content.decode()
    assert client.post(url, {"action": "test"}).status_code == 302
    delivery = Delivery.objects.get()
    assert delivery.event == "ping" and delivery.status == "pending" and delivery.job_id
    log = client.get(f"/projects/{project.pk}/webhooks/").content.decode()
    assert f'data-delivery="{delivery.pk}"' in log and 'hx-trigger="every 2s"' in log
    bad = client.post(url, {**FORM, "action": "save", "url": "http://10.1.2.3/"})
    assert bad.status_code == 400 and "private address" in bad.content.decode()
    assert client.post(url, {"action": "delete"}).status_code == 302
    assert not Webhook.objects.exists() and not Delivery.objects.exists()


@pytest.mark.parametrize("who", ["annotator", "stranger"])
def test_annotators_and_other_researchers_cannot_see_or_configure(world, who):
    project, _, annotator, stranger = world
    user = annotator if who == "annotator" else stranger
    webhook = services.webhook_create(project=project, url=FORM["url"], events=["job.failed"])
    client = client_for(user)
    assert client.get(f"/projects/{project.pk}/webhooks/").status_code == 404
    assert client.post(f"/projects/{project.pk}/webhooks/", FORM).status_code == 404
    for action in ("save", "rotate", "test", "delete"):
        response = client.post(f"/projects/{project.pk}/webhooks/{webhook.pk}/", {**FORM, "action": action})
        assert response.status_code == 404 and webhook.secret not in response.content.decode()
    assert client.get(f"/api/projects/{project.pk}/webhooks/").status_code == 404
    assert client.get(f"/api/webhooks/{webhook.pk}/").status_code == 404
    assert (
        client.patch(f"/api/webhooks/{webhook.pk}/", {"active": False}, content_type="application/json").status_code
        == 404
    )
    assert client.get(f"/api/webhooks/{webhook.pk}/deliveries/").status_code == 404
    assert client.post(f"/api/webhooks/{webhook.pk}/rotate-secret/").status_code == 404
    assert Webhook.objects.get().secret == webhook.secret and Webhook.objects.get().active
    assert not Delivery.objects.exists() and Webhook.objects.count() == 1


def test_a_webhook_of_another_project_behind_your_project_id_is_refused(world):
    project, researcher, _, stranger = world
    theirs = make_project(name="theirs", researchers=[stranger])
    webhook = services.webhook_create(project=theirs, url=FORM["url"], events=["job.failed"])
    response = client_for(researcher).post(f"/projects/{project.pk}/webhooks/{webhook.pk}/", {"action": "delete"})
    assert response.status_code == 404 and Webhook.objects.filter(pk=webhook.pk).exists()


def test_the_page_needs_a_csrf_token_and_a_login(world):
    project, researcher, _, _ = world
    assert client_for(researcher, csrf=True).post(f"/projects/{project.pk}/webhooks/", FORM).status_code == 403
    assert Client().get(f"/projects/{project.pk}/webhooks/").status_code == 302
    assert not Webhook.objects.exists()


def test_rest_create_returns_the_secret_once_and_lists_mask_it(world, api, settings):
    settings.PREFLOOP_JOB_BACKEND = "db"
    project, researcher, _, _ = world
    client = api(researcher)
    created = client.post(
        f"/api/projects/{project.pk}/webhooks/", {"url": FORM["url"], "events": ["job.failed"]}, format="json"
    )
    assert created.status_code == 201
    webhook = Webhook.objects.get()
    assert created.json()["secret"] == webhook.secret
    listed = client.get(f"/api/projects/{project.pk}/webhooks/").json()
    assert listed[0]["secret"] == webhook.masked_secret and webhook.secret not in str(listed)
    patched = client.patch(f"/api/webhooks/{webhook.pk}/", {"active": False}, format="json")
    assert (
        patched.status_code == 200 and patched.json()["active"] is False and patched.json()["events"] == ["job.failed"]
    )
    bad = client.patch(f"/api/webhooks/{webhook.pk}/", {"url": "http://[::1]/"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "url" and "loopback" in bad.json()["detail"]
    assert client.patch(f"/api/webhooks/{webhook.pk}/", [1, 2], format="json").status_code == 400
    unknown = client.post(
        f"/api/projects/{project.pk}/webhooks/", {"url": FORM["url"], "events": ["nope"]}, format="json"
    )
    assert unknown.status_code == 400
    tested = client.post(f"/api/webhooks/{webhook.pk}/test/")
    assert tested.status_code == 202 and tested.json()["event"] == "ping"
    assert [d["id"] for d in client.get(f"/api/webhooks/{webhook.pk}/deliveries/").json()] == [tested.json()["id"]]
    rotated = client.post(f"/api/webhooks/{webhook.pk}/rotate-secret/").json()
    webhook.refresh_from_db()
    assert rotated["secret"] == webhook.secret
    assert client.delete(f"/api/webhooks/{webhook.pk}/").status_code == 405  # deleting is the page's


def test_the_schema_lists_the_webhook_endpoints(api, world):
    schema = api(world[1]).get("/api/schema/").content.decode()
    for path in (
        "/api/projects/{project_id}/webhooks/",
        "/api/webhooks/{webhook_id}/test/",
        "/api/webhooks/{webhook_id}/deliveries/",
    ):
        assert path in schema
