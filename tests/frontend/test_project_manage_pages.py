"""Project settings and members in the web UI: the API's validation, the services' effects."""

from __future__ import annotations

import pytest

from annotate.models import Assignment, Comparison, Membership, Project, User
from annotate.services.assignment import next_comparison
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db

GOOD = {
    "name": "Helpfulness v2",
    "instructions": "Pick the **better** answer.",
    "aspects": "helpfulness, harmlessness",
    "overlap_target": "3",
    "lease_seconds": "600",
    "annotator_cap": "",
    "strength_scale": "0",
    "allow_tie": "on",
    "rationale": "optional",
    "gold_rate": "0.1",
    "gold_min_accuracy": "0.6",
    "gold_min_answers": "5",
}


def test_a_researcher_creates_a_project_with_the_apis_validation(client):
    researcher = make_user(role=User.Role.RESEARCHER)
    client.force_login(researcher)
    bad = client.post("/projects/new/", {**GOOD, "overlap_target": "0", "gold_rate": "1.5", "aspects": "a, a"})
    assert bad.status_code == 400
    assert set(bad.context["errors"]) == {"overlap_target", "gold_rate", "aspects"}
    assert "greater than or equal to 1" in bad.context["errors"]["overlap_target"]
    assert not Project.objects.exists()

    response = client.post("/projects/new/", GOOD)
    project = Project.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/members/"
    assert project.aspects == ["helpfulness", "harmlessness"] and project.allow_tie and not project.allow_both_bad
    assert (project.gold_rate, project.gold_min_accuracy, project.annotator_cap) == (0.1, 0.6, None)
    assert Membership.objects.filter(project=project, user=researcher, role="researcher").exists()


def test_annotators_cannot_create_projects(client):
    client.force_login(make_user())
    assert client.post("/projects/new/", GOOD).status_code == 403
    assert not Project.objects.exists()


def test_editing_the_overlap_target_recomputes_completeness(client):
    researcher, annotator = make_user(role=User.Role.RESEARCHER), make_user()
    project = make_project(researchers=[researcher], annotators=[annotator], overlap_target=2)
    [comparison] = make_comparisons(project, 1)
    Comparison.objects.filter(pk=comparison.pk).update(imported_votes=1)
    client.force_login(researcher)
    response = client.post(f"/projects/{project.pk}/settings/", {**GOOD, "name": project.name, "overlap_target": "1"})
    assert response.status_code == 302
    comparison.refresh_from_db()
    project.refresh_from_db()
    assert project.overlap_target == 1 and comparison.is_complete
    assert project.instructions == GOOD["instructions"]


def test_settings_of_a_project_one_does_not_research_are_not_found(client):
    project = make_project()
    client.force_login(make_user(role=User.Role.RESEARCHER))
    assert client.get(f"/projects/{project.pk}/settings/").status_code == 404
    assert client.post(f"/projects/{project.pk}/members/add/", {"username": "x"}).status_code == 404


def test_members_are_invited_added_paused_capped_and_removed(client):
    researcher, existing = make_user(role=User.Role.RESEARCHER), make_user("existing")
    project = make_project(researchers=[researcher])
    make_comparisons(project, 2)
    client.force_login(researcher)

    invited = client.post(
        f"/projects/{project.pk}/members/add/", {"username": "newbie", "role": "annotator", "cap": "5", "invite": "1"}
    )
    assert invited.status_code == 200
    link = invited.context["invitation"]["link"]
    assert "/accounts/set-password/" in link
    newbie = User.objects.get(username="newbie")
    assert not newbie.has_usable_password() and newbie.role == "annotator"
    assert Membership.objects.get(project=project, user=newbie).cap == 5
    assert client.get(link).status_code in (200, 302), "the one-time link opens the set-password page"

    refused = client.post(f"/projects/{project.pk}/members/add/", {"username": "ghost"})
    assert refused.status_code == 400 and "no active user" in refused.context["errors"]["username"]
    assert (
        client.post(
            f"/projects/{project.pk}/members/add/", {"username": "x", "role": "researcher", "invite": "1"}
        ).status_code
        == 400
    )

    client.post(f"/projects/{project.pk}/members/add/", {"username": "existing"})
    url = f"/projects/{project.pk}/members/{existing.pk}/"
    client.post(url, {"action": "pause"})
    assert Membership.objects.get(project=project, user=existing).paused
    assert next_comparison(annotator=existing, project=project).reason == "paused"
    client.post(url, {"action": "resume"})
    client.post(url, {"action": "cap", "cap": "1"})
    membership = Membership.objects.get(project=project, user=existing)
    assert (membership.paused, membership.cap) == (False, 1)
    assert client.post(url, {"action": "cap", "cap": "-3"}).status_code == 400

    lease = next_comparison(annotator=existing, project=project).assignment
    client.post(url, {"action": "remove"})
    assert not Membership.objects.filter(project=project, user=existing).exists()
    assert Assignment.objects.get(pk=lease.pk).state == Assignment.State.EXPIRED
    assert Comparison.objects.get(pk=lease.comparison_id).leases_open == 0, "the removed annotator's lease is released"
