"""The production profile end to end: uvicorn with 2 workers, PostgreSQL, Redis, invitations, a vote.

`make prod-smoke` runs this module (and the settings refusals beside it). The server is a real process with the production settings
(throwaway secret, ALLOWED_HOSTS=127.0.0.1) on the test database; the test plays the TLS proxy
(X-Forwarded-Proto: https) and the clients, and reads what was stored through the ORM.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from websockets.sync.client import connect

from annotate.models import User, Vote
from tests.prod.server import (
    Browser,
    Server,
    api,
    database_url,
    manage,
    manage_async,
    multipart,
    production_env,
    redis_reachable,
    redis_url,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PASSWORD = "a long passphrase for the smoke test"
PROMPTS = "\n".join(
    json.dumps(
        {
            "id": f"smoke-{i}",
            "prompt": f"Question {i}: what is {i} + {i}?",
            "completions": [
                {"model": "alpha", "text": f"It is {2 * i}."},
                {"model": "beta", "text": f"Maybe {2 * i + 1}."},
            ],
        }
    )
    for i in range(3)
).encode()


@pytest.fixture(scope="module")
def prod(django_db_setup, tmp_path_factory):
    """collectstatic, then uvicorn --workers 2 on the test database; stopped after the module."""
    if connection.vendor != "postgresql":
        pytest.skip("the production profile needs PostgreSQL")
    redis = redis_url()
    if not redis_reachable(redis):
        pytest.skip(f"Redis not reachable at {redis} (set PREFLOOP_TEST_REDIS_URL)")
    workdir = tmp_path_factory.mktemp("prod")
    env = production_env(database=database_url(connection.settings_dict), redis=redis, workdir=workdir)
    manage(env, "collectstatic", "--noinput", "-v0")
    server = Server(env=env, workers=2, log=workdir / "uvicorn.log").start()
    yield server
    server.stop()


def invite(prod: Server, *people: tuple[str, str]) -> list[str]:
    """`manage.py invite_user NAME --role ROLE` under the production settings, one process per
    person, side by side; returns the one-time links' paths."""
    runs = [manage_async(prod.env, "invite_user", username, "--role", role) for username, role in people]
    links = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, out + err
        assert re.fullmatch(r"/accounts/set-password/[\w-]+/[\w-]+/", out.strip()), out + err
        links.append(out.strip())
    return links


def accept_invitation(prod: Server, link: str, password: str = PASSWORD) -> None:
    """What the invited person does in the browser: open the link, choose a password."""
    browser = Browser(prod)
    status, headers, _ = browser.get(link)
    # Django moves the token into the session and out of the URL: /<uid>/<token>/ -> /<uid>/set-password/
    assert status == 302 and headers["Location"].endswith("/set-password/"), (status, dict(headers))
    form_path = headers["Location"]
    status, _, page = browser.get(form_path)
    assert status == 200 and 'name="new_password1"' in page
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    status, headers, _ = browser.post_form(
        form_path, {"csrfmiddlewaretoken": csrf, "new_password1": password, "new_password2": password}
    )
    assert status == 302 and headers["Location"] == "/login/", "the password is set"


def token_for(prod: Server, username: str, password: str = PASSWORD) -> str:
    status, body, _ = api(prod, "POST", "/api/auth/token/", form={"username": username, "password": password})
    assert status == 200, body
    return body["token"]


def test_invited_researcher_and_annotator_vote_through_the_workers(prod):
    researcher_link, annotator_link = invite(prod, ("smoke-researcher", "researcher"), ("smoke-annotator", "annotator"))
    # Before the link is used nobody can sign in as the new user: the password is unusable.
    assert api(prod, "POST", "/api/auth/token/", form={"username": "smoke-annotator", "password": ""})[0] == 400
    accept_invitation(prod, researcher_link)
    accept_invitation(prod, annotator_link)
    # The link works once: the password hash it was signed over has changed.
    status, headers, page = Browser(prod).get(researcher_link)
    assert status == 200 and "has been used or has expired" in page

    researcher, annotator = token_for(prod, "smoke-researcher"), token_for(prod, "smoke-annotator")
    status, project, _ = api(
        prod, "POST", "/api/projects/", token=researcher, data={"name": "Smoke", "overlap_target": 1}
    )
    assert status == 201, project
    status, report, _ = api(
        prod,
        "POST",
        f"/api/projects/{project['id']}/imports/",
        token=researcher,
        raw=multipart("file", "prompts.jsonl", PROMPTS, {"format": "prompts-jsonl"}),
    )
    assert status == 201, report
    status, body, _ = api(
        prod,
        "POST",
        f"/api/projects/{project['id']}/members/",
        token=researcher,
        data={"username": "smoke-annotator", "role": "annotator"},
    )
    assert status == 201, body

    # The researcher's live dashboard socket: it hears about the vote through the Redis channel layer
    # even when another worker stored it.
    with dashboard_socket(prod, "smoke-researcher", project["id"]) as dashboard:
        assert 'id="votes-done">0<' in receive_progress(dashboard)

        status, lease, _ = api(prod, "POST", f"/api/projects/{project['id']}/next/", token=annotator, data={})
        assert status == 200 and lease["assignment"], lease
        assignment = lease["assignment"]["assignment_id"]
        vote = {"choice": "a", "rationale": "A adds up.", "time_spent_ms": 4200}
        key = "6f1c0e9a-0000-4000-8000-00000000beef"
        status, body, _ = api(
            prod,
            "POST",
            f"/api/assignments/{assignment}/vote/",
            token=annotator,
            data=vote,
            headers={"Idempotency-Key": key},
        )
        assert status == 201, body
        # A retry with the same key (the other worker may answer it) stores nothing new.
        status, body, _ = api(
            prod,
            "POST",
            f"/api/assignments/{assignment}/vote/",
            token=annotator,
            data=vote,
            headers={"Idempotency-Key": key},
        )
        assert status == 200 and body["replayed"] is True

        stored = Vote.objects.get(idempotency_key=key)
        assert (stored.annotator.username, stored.choice, stored.rationale, stored.assignment_id) == (
            "smoke-annotator",
            "a",
            "A adds up.",
            assignment,
        )
        assert Vote.objects.filter(annotator__username="smoke-annotator").count() == 1
        status, votes, _ = api(prod, "GET", f"/api/projects/{project['id']}/votes/", token=researcher)
        assert status == 200 and votes["count"] == 1
        while 'id="votes-done">1<' not in receive_progress(dashboard):
            pass


def dashboard_socket(prod: Server, username: str, project_id: int):
    """Sign in on the web page (session cookie), then open the dashboard's websocket as the browser would."""
    browser = Browser(prod)
    _, _, page = browser.get("/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    status, _, _ = browser.post_form(
        "/login/", {"csrfmiddlewaretoken": csrf, "username": username, "password": PASSWORD}
    )
    assert status == 302 and "sessionid" in browser.cookies
    return connect(
        f"ws://127.0.0.1:{prod.port}/ws/projects/{project_id}/progress/",
        origin=browser.origin,
        proxy=None,
        additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "X-Forwarded-Proto": "https"},
        open_timeout=10,
    )


def receive_progress(socket) -> str:
    message = json.loads(socket.recv(timeout=10))
    assert message["target"] == "#live-progress"
    return message["content"]


def test_pages_carry_the_security_headers(prod):
    status, headers, page = Browser(prod).get("/login/")
    assert status == 200 and "Sign in" in page
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        f"connect-src 'self' wss://127.0.0.1:{prod.port}",
    ):
        assert directive in csp, (directive, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert all(part in headers["Set-Cookie"] for part in ("Secure", "HttpOnly", "SameSite=Lax"))
    # The API's JSON answers carry them too.
    _, _, api_headers = api(prod, "GET", "/api/projects/")
    assert "frame-ancestors 'none'" in api_headers["Content-Security-Policy"]
    assert api_headers["X-Content-Type-Options"] == "nosniff"
    # Static files: collected with hashed names and served by WhiteNoise from the workers, compressed.
    stylesheet = re.search(r'href="(/static/frontend/app\.[0-9a-f]{12}\.css)"', page).group(1)
    status, headers, body = prod.request(
        "GET", stylesheet, headers={"X-Forwarded-Proto": "https", "Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip" and "immutable" in headers["Cache-Control"]
    # Plain HTTP (nothing said it came through TLS) is sent to HTTPS.
    status, headers, _ = prod.request("GET", "/login/")
    assert status == 301 and headers["Location"] == f"https://127.0.0.1:{prod.port}/login/"


def test_error_pages_leak_no_stack_trace_or_settings(prod):
    answers = [
        prod.request("GET", "/no/such/page/", headers={"X-Forwarded-Proto": "https"}),
        prod.request("GET", "/login/", host="evil.example.org", headers={"X-Forwarded-Proto": "https"}),
        prod.request(
            "POST",
            "/api/auth/token/",
            body="{not json",
            headers={"X-Forwarded-Proto": "https", "Content-Type": "application/json"},
        ),
        prod.request("GET", "/api/projects/99999/", headers={"X-Forwarded-Proto": "https"}),
    ]
    assert [status for status, _, _ in answers] == [404, 400, 400, 401]
    for status, _, body in answers:
        text = body.decode(errors="replace")
        for leak in (
            "Traceback",
            'File "',
            "prefloop.urls",
            "URLconf",
            "DEBUG",
            "SECRET_KEY",
            "DisallowedHost",
            "psycopg",
            "site-packages",
        ):
            assert leak not in text, (status, leak, text[:500])


def test_login_lockout_holds_across_workers(prod):
    make_user("smoke-locked")
    make_user("smoke-other")
    for _ in range(5):  # two workers answer these; the counter lives in Redis
        status, body, _ = api(prod, "POST", "/api/auth/token/", form={"username": "smoke-locked", "password": "guess"})
        assert status in (400, 429)
    assert status == 429, "the fifth failure locks"
    status, body, headers = api(
        prod, "POST", "/api/auth/token/", form={"username": "smoke-locked", "password": PASSWORD}
    )
    assert status == 429 and headers["Retry-After"] == "900", "even the right password is refused while locked"
    # The HTML sign-in page refuses too, with its own message.
    browser = Browser(prod)
    _, _, page = browser.get("/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    status, _, page = browser.post_form(
        "/login/", {"csrfmiddlewaretoken": csrf, "username": "smoke-locked", "password": PASSWORD}
    )
    assert status == 200 and "Too many failed sign-ins" in page
    # Another user from the same address is not affected.
    assert token_for(prod, "smoke-other")


def make_user(username: str) -> User:
    """A user with the production hasher's hash (the test process itself uses a fast one)."""
    hasher = PBKDF2PasswordHasher()
    return User.objects.create(username=username, password=hasher.encode(PASSWORD, hasher.salt()))


def test_check_deploy_is_clean(prod):
    done = manage(prod.env, "check", "--deploy", "--fail-level", "WARNING", check=False)
    assert done.returncode == 0 and "System check identified no issues" in done.stdout, done.stdout + done.stderr
