"""Imports in the web UI: validate-first preview (nothing written), confirm, undo, archive."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotate.models import Comparison, Completion, DataImport, Prompt, User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.data_imports import UndoRefused, undo_import
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

PAIRS = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "5", "model_a": "m1", "model_b": "m2", "winner": "a"},
    {"prompt": "Capital of France?", "response_a": "Paris", "response_b": "Lyon", "model_a": "m1", "model_b": "m2"},
    {
        "prompt": "Colour of the sky?",
        "response_a": "blue",
        "response_b": "green",
        "model_a": "m1",
        "model_b": "m2",
        "winner": "tie",
    },
]


def jsonl(rows, *, bad_line: int | None = None) -> bytes:
    lines = [json.dumps(r) for r in rows]
    if bad_line is not None:
        lines.insert(bad_line - 1, '{"prompt": "broken", "response_a": ')
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def researcher_project(client):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher], overlap_target=2)
    client.force_login(researcher)
    return project


def preview(client, project, content: bytes, name: str = "pairs.jsonl", **fields):
    upload = SimpleUploadedFile(name, content, content_type="application/jsonl")
    return client.post(
        f"/projects/{project.pk}/imports/preview/", {"file": upload, "format": "", "pairing": "all", **fields}
    )


def test_a_bad_line_is_shown_with_its_line_and_nothing_is_written(client, researcher_project):
    response = preview(client, researcher_project, jsonl(PAIRS, bad_line=2))
    assert response.status_code == 400
    problems = response.context["problems"]
    assert problems and all("pairs.jsonl:2" in p for p in problems), problems
    assert "pairs.jsonl:2" in response.content.decode()
    assert not Prompt.objects.exists() and not DataImport.objects.exists()


def test_preview_counts_what_confirm_writes_and_writes_nothing_itself(client, researcher_project):
    response = preview(client, researcher_project, jsonl(PAIRS))
    assert response.status_code == 200
    shown = response.context["preview"]
    assert shown.in_file == {"prompts": 3, "completions": 6, "comparisons": 3, "votes": 2, "skipped": 0}
    assert shown.report.created == {"prompts": 3, "completions": 6, "comparisons": 3, "votes": 2}
    assert [row["prompt"] for row in shown.first_rows][:1] == ["What is 2+2?"]
    assert "Paris" in response.content.decode()
    assert not Prompt.objects.exists() and not Vote.objects.exists(), "the preview rolled back"

    confirmed = client.post(
        f"/projects/{researcher_project.pk}/imports/confirm/", {"token": shown.token, **response.context["options"]}
    )
    assert confirmed.status_code == 302
    record = DataImport.objects.get()
    assert record.created == shown.report.created
    assert (Prompt.objects.count(), Comparison.objects.count(), Vote.objects.count()) == (3, 3, 2)
    again = client.post(f"/projects/{researcher_project.pk}/imports/confirm/", {"token": shown.token, "pairing": "all"})
    assert again.status_code == 400 and "upload is gone" in again.context["form_error"], (
        "a staged upload is confirmed once"
    )
    assert DataImport.objects.count() == 1


def test_undo_removes_exactly_the_rows_of_the_import(client, researcher_project):
    response = preview(client, researcher_project, jsonl(PAIRS))
    client.post(
        f"/projects/{researcher_project.pk}/imports/confirm/",
        {"token": response.context["preview"].token, "pairing": "all"},
    )
    record = DataImport.objects.get()
    page = client.get(f"/projects/{researcher_project.pk}/imports/")
    assert b'value="undo"' in page.content
    client.post(f"/projects/{researcher_project.pk}/imports/{record.pk}/", {"action": "undo"})
    record.refresh_from_db()
    assert record.state == "undone"
    assert (Prompt.objects.count(), Completion.objects.count(), Comparison.objects.count(), Vote.objects.count()) == (
        0,
        0,
        0,
        0,
    )


def test_after_a_human_vote_the_import_can_only_be_archived(client, researcher_project):
    annotator = make_user()
    from annotate.services.projects import membership_set

    membership_set(project=researcher_project, user=annotator)
    response = preview(client, researcher_project, jsonl(PAIRS))
    client.post(
        f"/projects/{researcher_project.pk}/imports/confirm/",
        {"token": response.context["preview"].token, "pairing": "all"},
    )
    record = DataImport.objects.get()
    lease = next_comparison(annotator=annotator, project=researcher_project).assignment
    record_vote(annotator=annotator, assignment_id=lease.pk, votes=[VoteInput(choice="a")], idempotency_key="h1")
    with pytest.raises(UndoRefused, match="archive it instead"):
        undo_import(data_import=record)
    refused = client.post(f"/projects/{researcher_project.pk}/imports/{record.pk}/", {"action": "undo"})
    assert refused.status_code == 409
    assert Prompt.objects.count() == 3
    client.post(f"/projects/{researcher_project.pk}/imports/{record.pk}/", {"action": "archive"})
    record.refresh_from_db()
    assert record.state == "archived"
    assert not Comparison.objects.filter(is_open=True).exists(), "hidden from queues"
    assert Vote.objects.count() == 3, "kept for provenance"


def test_undoing_a_re_import_recounts_the_earlier_comparisons(client, researcher_project):
    first = [dict(PAIRS[0], winner="a")]
    response = preview(client, researcher_project, jsonl(first))
    client.post(
        f"/projects/{researcher_project.pk}/imports/confirm/",
        {"token": response.context["preview"].token, "pairing": "all"},
    )
    # The same pair again in another file (another voter): nothing new but the vote.
    second = [dict(PAIRS[0], winner="b")]
    response = preview(client, researcher_project, jsonl(second), name="more.jsonl")
    assert response.context["preview"].report.created.get("comparisons") == 0
    client.post(
        f"/projects/{researcher_project.pk}/imports/confirm/",
        {"token": response.context["preview"].token, "pairing": "all"},
    )
    comparison = Comparison.objects.get()
    assert (comparison.imported_votes, comparison.is_complete) == (2, True)
    later = DataImport.objects.order_by("id").last()
    undo_import(data_import=later)
    comparison.refresh_from_db()
    assert (comparison.imported_votes, comparison.is_complete, Vote.objects.count()) == (1, False, 1)


def test_annotators_and_outsiders_get_no_import_pages(client):
    project = make_project()
    client.force_login(make_user())
    assert client.get(f"/projects/{project.pk}/imports/").status_code == 404
