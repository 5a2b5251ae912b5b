"""The voting API: idempotent submits, clear 4xx, and what each role may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotate.models import Assignment, Comparison, ComparisonItem, Completion, Prompt, User, Vote
from annotate.services.assignment import next_comparison
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def lease(client, project):
    response = client.post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["assignment"]


def submit(client, assignment_id, key="key-1", **body):
    body.setdefault("choice", "a")
    return client.post(f"/api/assignments/{assignment_id}/vote/", {"idempotency_key": key, **body}, format="json")


@pytest.fixture
def setup(api):
    annotator, other = make_user("ann"), make_user("other")
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(annotators=[annotator, other], researchers=[researcher], overlap_target=2, strength_scale=3)
    make_comparisons(project, 3, models=("hidden-model-1", "hidden-model-2"))
    return project, api(annotator), api(other), api(researcher)


def test_submit_retried_with_the_same_key_returns_the_first_result(setup):
    project, client, _, _ = setup
    assignment = lease(client, project)
    first = submit(client, assignment["assignment_id"], strength=2)
    retry = submit(client, assignment["assignment_id"], strength=2)
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json()["replayed"] is True
    assert retry.json()["votes"] == first.json()["votes"]
    assert Vote.objects.count() == 1


def test_the_key_may_come_as_a_header(setup):
    project, client, _, _ = setup
    assignment = lease(client, project)
    url = f"/api/assignments/{assignment['assignment_id']}/vote/"
    for expected in (201, 200):
        response = client.post(url, {"choice": "tie"}, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1")
        assert response.status_code == expected
    assert Vote.objects.get().idempotency_key == "hdr-1"


def test_a_second_vote_with_a_new_key_is_a_conflict_and_changes_nothing(setup):
    project, client, _, _ = setup
    assignment = lease(client, project)
    submit(client, assignment["assignment_id"], key="k1")
    again = submit(client, assignment["assignment_id"], key="k2", choice="b")
    assert again.status_code == 409 and again.json()["error"] == "already_voted"
    assert list(Vote.objects.values_list("choice", flat=True)) == ["a"]


def test_voting_on_another_annotators_assignment_is_not_found(setup):
    project, client, other, _ = setup
    assignment = lease(client, project)
    response = submit(other, assignment["assignment_id"])
    assert response.status_code == 404
    assert not Vote.objects.exists()


def test_a_key_reused_on_another_assignment_is_refused(setup):
    project, client, _, _ = setup
    first = lease(client, project)
    submit(client, first["assignment_id"], key="same")
    second = client.post(f"/api/projects/{project.pk}/next/", {}, format="json").json()["assignment"]
    response = submit(client, second["assignment_id"], key="same")
    assert response.status_code == 409 and response.json()["error"] == "idempotency_key_reused"
    assert Vote.objects.count() == 1


def test_an_expired_assignment_whose_slot_was_taken_is_gone(setup):
    project, client, other, _ = setup
    Comparison.objects.exclude(pk=Comparison.objects.order_by("id").first().pk).delete()
    project.overlap_target = 1
    project.save()
    assignment = lease(client, project)
    Assignment.objects.filter(pk=assignment["assignment_id"]).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken = lease(other, project)
    assert taken is not None
    response = submit(client, assignment["assignment_id"])
    assert response.status_code == 410 and response.json()["error"] == "assignment_expired"
    assert not Vote.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"choice": "maybe"}, "votes[overall].choice"),
        ({"choice": "tie", "strength": 2}, "votes[overall].strength"),
        ({"choice": "a", "strength": 9}, "votes[overall].strength"),
        ({"votes": [{"aspect": "style", "choice": "a"}]}, "votes"),
    ],
)
def test_invalid_votes_name_the_field_and_write_nothing(setup, body, field):
    project, client, _, _ = setup
    assignment = lease(client, project)
    response = submit(client, assignment["assignment_id"], **body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Vote.objects.exists()
    assert Assignment.objects.get(pk=assignment["assignment_id"]).state == Assignment.State.LEASED


def test_a_missing_idempotency_key_is_refused(setup):
    project, client, _, _ = setup
    assignment = lease(client, project)
    response = client.post(f"/api/assignments/{assignment['assignment_id']}/vote/", {"choice": "a"}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "idempotency_key"


def test_required_rationale_and_disallowed_labels(api):
    annotator = make_user()
    project = make_project(annotators=[annotator], rationale="required", allow_tie=False)
    make_comparisons(project, 1)
    client = api(annotator)
    assignment = lease(client, project)
    assert assignment["choices"] == ["a", "b", "both_bad"]
    assert submit(client, assignment["assignment_id"], choice="tie").status_code == 400
    missing = submit(client, assignment["assignment_id"], choice="b", key="k2")
    assert missing.json()["field"] == "votes[overall].rationale"
    ok = submit(client, assignment["assignment_id"], choice="b", key="k3", rationale="B cites a source.")
    assert ok.status_code == 201
    assert Vote.objects.get().rationale == "B cites a source."


def test_multi_aspect_projects_take_one_vote_per_aspect(api):
    annotator = make_user()
    project = make_project(annotators=[annotator], aspects=["helpfulness", "harmlessness"])
    make_comparisons(project, 1)
    client = api(annotator)
    assignment = lease(client, project)
    assert assignment["aspects"] == ["helpfulness", "harmlessness"]
    assert submit(client, assignment["assignment_id"]).status_code == 400
    votes = [{"aspect": "helpfulness", "choice": "a"}, {"aspect": "harmlessness", "choice": "tie"}]
    response = client.post(
        f"/api/assignments/{assignment['assignment_id']}/vote/",
        {"votes": votes, "idempotency_key": "m1"},
        format="json",
    )
    assert response.status_code == 201
    assert dict(Vote.objects.values_list("aspect", "choice")) == {"helpfulness": "a", "harmlessness": "tie"}
    assert Comparison.objects.get().votes_done == 1


def test_kway_comparisons_take_a_ranking(api, tmp_path):
    from annotate.services.importing import import_file

    annotator = make_user()
    project = make_project(annotators=[annotator])
    path = tmp_path / "k.jsonl"
    path.write_text(
        '{"prompt": "Q", "completions": [{"text": "x", "model": "m1"}, {"text": "y", "model": "m2"}, {"text": "z", "model": "m3"}]}\n'
    )
    import_file(project=project, path=path, pairing="kway")
    client = api(annotator)
    assignment = lease(client, project)
    assert [r["side"] for r in assignment["responses"]] == ["a", "b", "c"]
    assert submit(client, assignment["assignment_id"], choice=None, ranking=["a", "b"]).status_code == 400
    response = submit(client, assignment["assignment_id"], choice=None, ranking=["c", "a", "b"], key="r2")
    assert response.status_code == 201
    vote = Vote.objects.get()
    shown = Assignment.objects.get().shown_order
    assert vote.ranking == [shown[2], shown[0], shown[1]]


def test_annotators_see_only_their_projects_and_own_votes(setup, api):
    project, client, other, _ = setup
    outsider_project = make_project()
    assert [p["id"] for p in client.get("/api/projects/").json()] == [project.pk]
    assert client.get(f"/api/projects/{outsider_project.pk}/").status_code == 404
    assert client.post(f"/api/projects/{outsider_project.pk}/next/", {}, format="json").status_code == 404
    submit(client, lease(client, project)["assignment_id"])
    assert client.get(f"/api/projects/{project.pk}/my-votes/").json()["count"] == 1
    assert other.get(f"/api/projects/{project.pk}/my-votes/").json()["count"] == 0


def test_annotators_cannot_reach_researcher_endpoints_or_model_names(setup):
    project, client, _, _ = setup
    submit(client, lease(client, project)["assignment_id"])
    for path in ("progress", "comparisons", "votes"):
        assert client.get(f"/api/projects/{project.pk}/{path}/").status_code == 404
    everything = (
        b"".join(
            client.get(url).content
            for url in ("/api/projects/", f"/api/projects/{project.pk}/", f"/api/projects/{project.pk}/my-votes/")
        )
        + client.post(f"/api/projects/{project.pk}/next/", {}, format="json").content
    )
    assert b"hidden-model" not in everything


def test_researchers_see_progress_per_comparison_and_votes(setup):
    project, client, _, researcher = setup
    submit(client, lease(client, project)["assignment_id"])
    progress = researcher.get(f"/api/projects/{project.pk}/progress/").json()
    assert progress["votes_done"] == 1 and progress["votes_needed"] == 3 * 2 - 1
    rows = researcher.get(f"/api/projects/{project.pk}/comparisons/").json()["results"]
    assert sum(r["votes_done"] for r in rows) == 1
    assert all(r["models"] == ["hidden-model-1", "hidden-model-2"] for r in rows)
    votes = researcher.get(f"/api/projects/{project.pk}/votes/").json()["results"]
    assert votes[0]["annotator"] == "ann" and votes[0]["winner_model"].startswith("hidden-model")


def test_researchers_of_another_project_see_nothing(setup, api):
    project, _, _, _ = setup
    stranger = api(make_user("stranger", role=User.Role.RESEARCHER))
    for path in ("", "progress/", "comparisons/", "votes/"):
        assert stranger.get(f"/api/projects/{project.pk}/{path}").status_code == 404


def test_anonymous_requests_are_refused(client):
    assert client.get("/api/projects/").status_code == 401
    assert client.post("/api/projects/1/next/").status_code == 401


def test_researchers_create_projects_and_add_members(api):
    researcher = make_user(role=User.Role.RESEARCHER)
    annotator = make_user("newbie")
    client = api(researcher)
    created = client.post("/api/projects/", {"name": "Helpfulness v2", "overlap_target": 2}, format="json")
    assert created.status_code == 201
    project_id = created.json()["id"]
    added = client.post(f"/api/projects/{project_id}/members/", {"username": "newbie", "cap": 50}, format="json")
    assert added.status_code == 201
    assert api(annotator).get("/api/projects/").json()[0]["id"] == project_id
    assert api(annotator).post("/api/projects/", {"name": "nope"}, format="json").status_code == 403


def test_the_openapi_schema_describes_next_and_vote(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/projects/{project_id}/next/" in paths
    assert "/api/assignments/{assignment_id}/vote/" in paths


def test_the_schema_of_a_ranking_describes_tie_groups_and_its_example_is_accepted(client, api):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    vote_input = schema["components"]["schemas"]["VoteInput"]["properties"]["ranking"]
    side, group = vote_input["items"]["oneOf"]
    assert side["type"] == "string" and group["type"] == "array" and group["items"] == side
    assert schema["components"]["schemas"]["AspectVote"]["properties"]["ranking"] == vote_input
    # The documented example is what the API takes: c first, a and b tied, d last.
    annotator = make_user()
    project = make_project(annotators=[annotator], allow_tie=True)
    prompt = Prompt.objects.create(project=project, key="k", text="Rank these.")
    completions = [
        Completion.objects.create(prompt=prompt, key=str(i), model_name=f"m{i}", text=f"answer {i}") for i in range(4)
    ]
    comparison = Comparison.objects.create(project=project, prompt=prompt, key="-".join(str(c.pk) for c in completions))
    ComparisonItem.objects.bulk_create(
        ComparisonItem(comparison=comparison, completion=c, position=i) for i, c in enumerate(completions)
    )
    assignment = next_comparison(annotator=annotator, project=project).assignment
    body = {"idempotency_key": "schema-example", "ranking": vote_input["example"]}
    response = api(annotator).post(f"/api/assignments/{assignment.pk}/vote/", body, format="json")
    assert response.status_code == 201, response.content
    c, a, b, d = (assignment.shown_order["abcd".index(x)] for x in "cabd")
    vote = Vote.objects.get(assignment=assignment)
    assert (vote.ranking, vote.ranking_ties, vote.winner_id, vote.loser_id) == ([c, a, b, d], [[a, b]], c, d)
