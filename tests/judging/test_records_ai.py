"""The record browser's AI source: comparisons with judge verdicts, shown apart from votes, exported as "ai"."""

from __future__ import annotations

import json
import re

import pytest

from annotate.selectors_records import parse_record_filter, record_comparisons
from tests.judging.helpers import judge_verdict
from tests.records_data import make_records_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def data():
    data = make_records_data()
    judge_verdict(data.comparisons[1], None, "second", "BA", probabilities={"second": 0.75})
    judge_verdict(data.comparisons[3], None, "tie", "AA", consistent=False)
    return data


def test_the_ai_filter_keeps_the_comparisons_with_verdicts(data):
    f = parse_record_filter(data.project, {"source": "ai"})
    kept = list(record_comparisons(data.project, f).values_list("pk", flat=True))
    assert kept == [data.comparisons[1].pk, data.comparisons[3].pk]
    other_aspect = parse_record_filter(data.project, {"source": "ai", "aspect": "overall"})
    assert record_comparisons(data.project, other_aspect).count() == 2


def test_the_page_shows_verdicts_as_ai_feedback_and_annotators_get_404(client, data):
    client.force_login(data.researcher)
    body = client.get(f"/projects/{data.project.pk}/records/", {"source": "ai"}).content.decode()
    ids = [int(i) for i in re.findall(r'data-comparison="(\d+)"', body)]
    assert ids == [data.comparisons[1].pk, data.comparisons[3].pk]
    assert body.count("record-ai") == 2 and "not a human vote" in body and "data-vote=" not in body
    second = data.comparisons[1].items.order_by("position")[1].completion.model_name
    assert f"{second} over " in body and "0.75" in body and "inconsistent" in body
    client.force_login(data.alice)
    assert client.get(f"/projects/{data.project.pk}/records/", {"source": "ai"}).status_code == 404


def test_the_export_of_the_ai_filter_holds_the_ai_rows(client, data):
    client.force_login(data.researcher)
    for query, expected in (({}, [1, 3]), ({"q": "tides"}, [1])):
        response = client.get(
            f"/projects/{data.project.pk}/records/export/",
            {"source": "ai", **query, "format": "jsonl", "ties": "label"},
        )
        text = b"".join(response.streaming_content).decode()
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["comparison_id"] for r in rows] == [data.comparisons[i].pk for i in expected]
        assert {r["source"] for r in rows} == {"ai"}
