"""The record browser: each filter against the database, validation, permissions, and the filter's export."""

from __future__ import annotations

import json
import re

import pytest

from annotate.models import Vote
from annotate.selectors_records import RECORD_SOURCES, parse_record_filter, record_comparisons
from tests.factories import make_user
from tests.records_data import make_records_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def data():
    return make_records_data()


def shown(client, data, **params) -> list[int]:
    client.force_login(data.researcher)
    response = client.get(f"/projects/{data.project.pk}/records/", params)
    assert response.status_code == 200, response.content[:500]
    return [int(i) for i in re.findall(r'data-comparison="(\d+)"', response.content.decode())]


def ids(data, *indexes) -> list[int]:
    return [data.comparisons[i].pk for i in indexes]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, (0, 1, 2, 3, 4)),
        ({"agreement": "unanimous"}, (0,)),
        ({"agreement": "split"}, (1,)),
        ({"agreement": "single"}, (2, 3)),
        ({"agreement": "none"}, (4,)),
        ({"gold": "yes"}, (4,)),
        ({"gold": "no"}, (0, 1, 2, 3)),
        ({"source": "imported"}, (3,)),
        ({"source": "human"}, (0, 1, 2)),
        ({"label": "tie"}, (2,)),
        ({"label": "preference"}, (0, 1, 3)),
        ({"label": "ranked"}, ()),
        ({"q": "PHOTOSYNTHESIS"}, (3,)),  # in a response, any case
        ({"q": "tides"}, (1,)),  # in the prompt
        ({"round": "0"}, (0, 1, 2, 3, 4)),
        ({"round": "1"}, ()),
        ({"aspect": "overall", "agreement": "single"}, (2, 3)),
    ],
)
def test_each_filter_keeps_the_comparisons_the_database_says(client, data, params, expected):
    assert shown(client, data, **params) == ids(data, *expected)


def test_annotator_filter_keeps_their_comparisons_and_only_their_votes(client, data):
    client.force_login(data.researcher)
    body = client.get(f"/projects/{data.project.pk}/records/", {"annotator": data.bob.username}).content.decode()
    assert [int(i) for i in re.findall(r'data-comparison="(\d+)"', body)] == ids(data, 0, 1)
    bob_votes = set(Vote.objects.filter(annotator=data.bob).values_list("pk", flat=True))
    assert {int(v) for v in re.findall(r'data-vote="(\d+)"', body)} == bob_votes
    assert shown(client, data, annotator="prd:1") == ids(data, 3)  # an imported voter's id
    assert shown(client, data, annotator="nobody") == []


def test_agreement_is_per_answer_not_per_side_shown(data):
    # alice and bob saw c0's sides in whatever order; both picked the same completion: unanimous
    f = parse_record_filter(data.project, {"agreement": "unanimous"})
    c0 = record_comparisons(data.project, f).get()
    assert (c0.pk, c0.n_voters, c0.n_answers) == (data.comparisons[0].pk, 2, 1)


def test_page_shows_rationales_escaped_both_responses_and_model_names(client, data):
    client.force_login(data.researcher)
    body = client.get(f"/projects/{data.project.pk}/records/", {"agreement": "unanimous"}).content.decode()
    assert "clearly &lt;b&gt;right&lt;/b&gt;" in body and "<b>right</b>" not in body
    assert "sun-model over moon-model" in body
    assert "· 2 voters</p>" in body
    assert body.count('class="model-name"') == 2
    assert "<strong>short</strong>" in body  # the response's Markdown, rendered


@pytest.mark.parametrize(
    "params, field",
    [
        ({"agreement": "most"}, "agreement"),
        ({"round": "-1"}, "round"),
        ({"round": "x"}, "round"),
        ({"aspect": "harmlessness"}, "aspect"),
        ({"source": "robots"}, "source"),
        ({"label": "a"}, "label"),
        ({"gold": "maybe"}, "gold"),
        ({"q": "x" * 201}, "q"),
        ({"page": "0"}, "page"),
        ({"page": "99999999"}, "page"),
        ({"round": "9" * 5000}, "round"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_field(client, data, params, field):
    client.force_login(data.researcher)
    response = client.get(f"/projects/{data.project.pk}/records/", params)
    assert response.status_code == 400
    assert f'data-field="{field}"' in response.content.decode()
    export = client.get(f"/projects/{data.project.pk}/records/export/", {**params, "format": "jsonl"})
    assert export.status_code == 400 and export.content.decode().startswith(f"{field}:")


def test_annotators_and_strangers_get_404(client, data):
    for user in (data.alice, make_user("stranger")):
        client.force_login(user)
        assert client.get(f"/projects/{data.project.pk}/records/").status_code == 404
        assert client.get(f"/projects/{data.project.pk}/records/export/", {"format": "jsonl"}).status_code == 404


def test_pages_are_bounded_and_linked(client, data, monkeypatch):
    monkeypatch.setattr("annotate.selectors_records.PAGE_SIZE", 2)
    client.force_login(data.researcher)
    body = client.get(f"/projects/{data.project.pk}/records/", {"gold": "no", "page": "2"}).content.decode()
    assert [int(i) for i in re.findall(r'data-comparison="(\d+)"', body)] == ids(data, 2, 3)
    assert 'href="?gold=no&amp;page=1"' in body and 'rel="next"' not in body


def export_rows(client, data, **params) -> tuple[list[dict], dict]:
    client.force_login(data.researcher)
    response = client.get(
        f"/projects/{data.project.pk}/records/export/", {**params, "format": "jsonl", "ties": "label"}
    )
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Disposition"].startswith('attachment; filename="prefloop-Records-records-')
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    manifest = client.get(
        f"/projects/{data.project.pk}/records/export/", {**params, "format": "jsonl", "part": "manifest"}
    )
    return rows, json.loads(b"".join(manifest.streaming_content))


def test_the_filter_exports_as_is_in_the_normal_format_and_the_manifest_says_which(client, data):
    rows, manifest = export_rows(client, data, agreement="split")
    assert [r["comparison_id"] for r in rows] == ids(data, 1)
    assert rows[0]["schema_version"] == "prefloop.preference/1"
    assert manifest["filters"]["record_filter"] == {"agreement": "split"}
    assert "comparisons" not in manifest["filters"]
    rows, manifest = export_rows(client, data, source="imported")
    assert [r["comparison_id"] for r in rows] == ids(data, 3)
    assert manifest["filters"]["sources"] == list(RECORD_SOURCES["imported"].sources)
    rows, _ = export_rows(client, data)
    assert sorted(r["comparison_id"] for r in rows) == ids(data, 0, 1, 2, 3)  # no filter: all but the gold check


def test_raw_export_of_an_annotator_holds_their_votes_only(client, data):
    client.force_login(data.researcher)
    response = client.get(
        f"/projects/{data.project.pk}/records/export/",
        {"annotator": data.alice.username, "label": "tie", "format": "jsonl", "raw": "true"},
    )
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["vote_id"] for r in rows] == list(
        Vote.objects.filter(annotator=data.alice, choice="tie").values_list("pk", flat=True)
    )


def test_a_bad_export_option_names_it(client, data):
    client.force_login(data.researcher)
    response = client.get(f"/projects/{data.project.pk}/records/export/", {"format": "xlsx"})
    assert response.status_code == 400 and response.content.decode().startswith("format:")
