"""Exports mark AI rows (--source human|ai|all and a source column); the leaderboard's three label toggles."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from annotate.export.rows import ExportFilters, ExportOptions, iter_preference_rows
from annotate.export.vote_rows import iter_vote_rows
from annotate.leaderboard.data import VoteFilter, project_pair_counts
from annotate.models import User
from judging.export import sources_for
from tests.factories import make_comparisons, make_project, make_user
from tests.judging.helpers import human_vote, judge_verdict

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled():
    researcher, u1 = make_user(role=User.Role.RESEARCHER), make_user()
    project = make_project(name="sources", researchers=[researcher])
    c1, c2, c3 = make_comparisons(project, 3)  # completions of model-x (position 0) and model-y (position 1)
    human_vote(c1, u1, "first")
    human_vote(c2, u1, "first")
    judge_verdict(c1, None, "second", "BA")
    judge_verdict(c3, None, "second", "BA")
    judge_verdict(c2, None, "tie", "AA", consistent=False)
    return project, researcher


def test_export_sources(labelled, tmp_path):
    project, _ = labelled
    options = ExportOptions(ties="label")
    human = list(iter_preference_rows(project, ExportFilters(sources=sources_for("humans")), options))
    ai = list(iter_preference_rows(project, ExportFilters(sources=sources_for("ai")), options))
    both = list(iter_preference_rows(project, ExportFilters(sources=sources_for("all")), options))
    assert [r["source"] for r in human] == ["human", "human"]
    assert [r["source"] for r in ai] == ["ai"] * 3 and len(both) == 5
    assert sorted(r["label"] for r in ai) == ["b", "b", "tie"] and all(r["votes"] == 0 for r in ai)
    raw = list(iter_vote_rows(project, ExportFilters(sources=sources_for("all"))))
    assert sorted(r["source"] for r in raw) == ["ai", "ai", "ai", "human", "human"]
    out = tmp_path / "ai.jsonl"
    call_command(
        "export_dataset", "--project", "sources", "--out", str(out), "--source", "ai", "--ties", "label", verbosity=0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and {r["source"] for r in rows} == {"ai"}
    default = tmp_path / "default.parquet"
    call_command("export_dataset", "--project", "sources", "--out", str(default), "--format", "parquet", verbosity=0)
    import pyarrow.parquet as pq

    assert pq.read_table(default).column("source").to_pylist() == ["human", "human"]


def test_export_rest_source(labelled, api):
    project, researcher = labelled
    response = api(researcher).get(
        f"/api/projects/{project.pk}/export/", {"format": "jsonl", "source": "ai", "ties": "label"}
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert [json.loads(line)["source"] for line in body.decode().splitlines()] == ["ai"] * 3


def test_leaderboard_label_toggles(labelled, api, client):
    project, researcher = labelled
    counts = {x: project_pair_counts(project, VoteFilter(labels=x)) for x in ("human", "judge", "both")}
    # model-x is position 0: people picked it twice; the judge picked model-y twice and tied once
    assert {x: (c.models, c.counts.tolist()) for x, c in counts.items()} == {
        "human": (("model-x", "model-y"), [[2, 0, 0]]),
        "judge": (("model-x", "model-y"), [[0, 1, 2]]),
        "both": (("model-x", "model-y"), [[2, 1, 2]]),
    }
    response = api(researcher).get(
        f"/api/projects/{project.pk}/leaderboard/", {"labels": "judge", "bootstrap": 0, "elo": "true"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["method"]["labels"] == "judge" and response.json()["method"]["battles"] == 3
    assert api(researcher).get(f"/api/projects/{project.pk}/leaderboard/", {"labels": "robots"}).status_code == 400
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/leaderboard/?labels=both").content.decode()
    assert "judge only" in page and '<strong aria-current="true">both</strong>' in page
