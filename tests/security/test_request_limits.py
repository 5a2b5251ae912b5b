"""Request limits: oversized bodies answer 413, deep JSON, huge integers and unstorable text 400.

Every refusal is the API's JSON error shape ({"error", "detail", "field"?}) and writes nothing.
"""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client

from annotate.models import User, Vote
from annotate.services.voting import VoteInput, record_vote
from prefloop.core.errors import InvalidVote
from tests.factories import make_comparisons, make_project, make_user
from tests.security.conftest import db_fingerprint

pytestmark = pytest.mark.django_db

TWELVE_MB = 12 * 1024 * 1024


@pytest.fixture
def leased(api):
    """An annotator's client, the project and a leased assignment's vote URL."""
    annotator = make_user("ann")
    project = make_project(annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    client = api(annotator)
    response = client.post(f"/api/projects/{project.pk}/next/", {}, format="json")
    assignment_id = response.json()["assignment"]["assignment_id"]
    return client, project, f"/api/assignments/{assignment_id}/vote/"


def post_json(client, url: str, text: str):
    return client.post(url, text, content_type="application/json")


def refused(response, status: int, error: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["error"] == error and body["detail"], body
    if field is not None:
        assert body["field"] == field, body
    return body


def test_a_12_mb_vote_body_answers_413_and_writes_nothing(leased):
    client, _, url = leased
    before = db_fingerprint()
    body = json.dumps({"choice": "a", "idempotency_key": "k1", "rationale": "x" * TWELVE_MB})
    response = post_json(client, url, body)
    assert "PREFLOOP_MAX_REQUEST_BYTES" in refused(response, 413, "request_too_large")["detail"]
    assert db_fingerprint() == before


def test_a_form_post_to_the_api_over_the_limit_answers_413(api):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    response = api(researcher).post(
        "/api/projects/", "name=big&instructions=" + "x" * TWELVE_MB, content_type="application/x-www-form-urlencoded"
    )
    refused(response, 413, "request_too_large")


def test_a_page_form_post_over_the_limit_answers_413():
    browser = Client(enforce_csrf_checks=True)
    browser.get("/login/")  # sets the CSRF cookie; the check then reads the body
    response = browser.post(
        "/login/",
        "username=a&password=" + "x" * TWELVE_MB,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )
    assert response.status_code == 413
    assert "PREFLOOP_MAX_REQUEST_BYTES" in response.content.decode()


def test_a_multipart_body_over_the_limit_answers_413_though_its_file_parts_escape_django(leased):
    client, _, url = leased
    upload = io.BytesIO(b"x" * TWELVE_MB)
    upload.name = "big.bin"
    response = client.post(url, {"choice": "a", "idempotency_key": "k1", "file": upload}, format="multipart")
    refused(response, 413, "request_too_large")
    assert not Vote.objects.exists()


def test_a_body_found_too_large_only_when_read_also_answers_413(leased, settings):
    # A chunked body declares no length; Django then measures what it buffered (RequestDataTooBig).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client, _, url = leased
    response = post_json(client, url, json.dumps({"choice": "a", "idempotency_key": "k1", "rationale": "x" * 20_000}))
    refused(response, 413, "request_too_large")
    page = Client().post(
        "/login/", "username=a&password=" + "x" * 20_000, content_type="application/x-www-form-urlencoded"
    )
    assert page.status_code == 413 and "PREFLOOP_MAX_REQUEST_BYTES" in page.content.decode()


def test_the_request_limit_is_a_setting(leased, settings):
    settings.PREFLOOP_MAX_REQUEST_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client, _, url = leased
    response = post_json(client, url, json.dumps({"choice": "a", "idempotency_key": "k1", "rationale": "x" * 10_000}))
    assert "10000 bytes" in refused(response, 413, "request_too_large")["detail"]
    assert post_json(client, url, json.dumps({"choice": "a", "idempotency_key": "k1"})).status_code == 201


def test_import_uploads_keep_their_own_larger_limit(api, settings):
    settings.PREFLOOP_MAX_REQUEST_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    rows = "".join(
        json.dumps(
            {
                "prompt": f"question {i}",
                "completions": [{"text": f"answer {i} a", "model": "m1"}, {"text": f"answer {i} b", "model": "m2"}],
            }
        )
        + "\n"
        for i in range(500)
    )
    upload = io.BytesIO(rows.encode())
    upload.name = "prompts.jsonl"
    assert len(rows) > 40_000
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content[:300]


DEEP = 100_000


def test_json_nested_100k_deep_answers_400_on_next_and_in_votes(leased):
    client, project, url = leased
    before = db_fingerprint()
    deep = "[" * DEEP + "]" * DEEP
    refused(post_json(client, f"/api/projects/{project.pk}/next/", deep), 400, "invalid_body", "body")
    refused(post_json(client, f"/api/projects/{project.pk}/next/", '{"exclude": ' + deep + "}"), 400, "invalid_body")
    votes = '{"idempotency_key": "k1", "votes": ' + deep + "}"
    refused(post_json(client, url, votes), 400, "invalid_body")
    assert db_fingerprint() == before


def test_json_one_level_deeper_than_the_limit_answers_400_naming_where(leased, settings):
    client, _, url = leased
    limit = settings.PREFLOOP_MAX_JSON_DEPTH
    # {"votes": [ ... ]} is two levels; `limit - 1` more lists reach the limit exactly.
    at_limit = {
        "idempotency_key": "k1",
        "choice": "a",
        "votes": [0],
        "x": json.loads("[" * (limit - 1) + "]" * (limit - 1)),
    }
    over = {**at_limit, "x": [at_limit["x"]]}
    body = refused(post_json(client, url, json.dumps(over)), 400, "invalid_body", "x" + "[0]" * (limit - 1))
    assert f"deeper than {limit} levels" in body["detail"]
    # At the limit the parser lets it through and the view judges the fields.
    refused(post_json(client, url, json.dumps(at_limit)), 400, "invalid_vote", "votes[0]")


@pytest.mark.parametrize("field", ["strength", "time_spent_ms"])
@pytest.mark.parametrize("digits", [50, 4300, 5000])
def test_integers_with_thousands_of_digits_answer_400_naming_the_field(leased, field, digits):
    client, _, url = leased
    before = db_fingerprint()
    body = f'{{"idempotency_key": "k1", "choice": "a", "{field}": {"9" * digits}}}'
    refused(post_json(client, url, body), 400, "invalid_body", field)
    refused(post_json(client, url, body.replace(": 9", ": -9")), 400, "invalid_body", field)
    assert db_fingerprint() == before


@pytest.mark.parametrize("value", ["9" * 5000, "9" * 30, "²", "١٢"])
def test_integers_given_as_strings_of_many_or_non_ascii_digits_answer_400(leased, value):
    client, project, url = leased
    response = client.post(url, {"idempotency_key": "k1", "choice": "a", "time_spent_ms": value}, format="json")
    refused(response, 400, "invalid_vote", "time_spent_ms")
    response = client.post(f"/api/projects/{project.pk}/next/", {"exclude": [value]}, format="json")
    refused(response, 400, "invalid_vote", "exclude")
    response = client.post(url, {"idempotency_key": "k1", "choice": "a", "strength": value}, format="json")
    refused(response, 400, "invalid_vote", "strength")


def test_an_id_beyond_64_bits_in_exclude_answers_400(leased):
    client, project, _ = leased
    response = client.post(f"/api/projects/{project.pk}/next/", {"exclude": [2**63]}, format="json")
    refused(response, 400, "invalid_vote", "exclude")


@pytest.mark.parametrize("key", ["\ud800", "k\udfff", "k\x00"])
def test_a_lone_surrogate_or_nul_in_the_idempotency_key_answers_400(leased, key):
    client, _, url = leased
    before = db_fingerprint()
    body = json.dumps({"choice": "a", "idempotency_key": key})  # ensure_ascii: sent as \ud800, \u0000
    refused(post_json(client, url, body), 400, "invalid_body", "idempotency_key")
    assert db_fingerprint() == before
    assert post_json(client, url, json.dumps({"choice": "a", "idempotency_key": "k1"})).status_code == 201


@pytest.mark.parametrize("key", ["\ud800", "k\x00"])
def test_the_voting_service_refuses_an_unstorable_key_itself(leased, key):
    _, project, url = leased
    annotator = User.objects.get(username="ann")
    assignment_id = int(url.split("/")[3])
    with pytest.raises(InvalidVote) as caught:
        record_vote(
            annotator=annotator, assignment_id=assignment_id, votes=[VoteInput(choice="a")], idempotency_key=key
        )
    assert caught.value.field == "idempotency_key"
    assert not Vote.objects.exists()


def test_unstorable_text_anywhere_in_a_body_names_its_field(leased):
    client, _, url = leased
    body = json.dumps(
        {"idempotency_key": "k1", "votes": [{"aspect": "overall", "choice": "a", "rationale": "ok\ud83d"}]}
    )
    refused(post_json(client, url, body), 400, "invalid_body", "votes[0].rationale")
    body = json.dumps({"idempotency_key": "k1", "choice": "a", "\udc00": 1})
    refused(post_json(client, url, body), 400, "invalid_body")


def test_malformed_json_is_a_400_in_the_same_shape(leased):
    client, _, url = leased
    refused(post_json(client, url, '{"choice": "a",'), 400, "invalid_body", "body")
    refused(post_json(client, url, '{"choice": NaN}'), 400, "invalid_body", "body")


def test_paired_surrogates_and_ordinary_bodies_still_work(leased):
    client, _, url = leased
    body = json.dumps({"idempotency_key": "k1", "choice": "a", "time_spent_ms": 1200})  # 😀 escaped below
    response = post_json(client, url, body.replace('"k1"', '"k\\ud83d\\ude00"'))
    assert response.status_code == 201, response.content
    assert Vote.objects.get().idempotency_key == "k\U0001f600"
