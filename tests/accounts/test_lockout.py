"""Login lockout: 5 failures per (user name, IP) in 15 minutes lock that pair for 15 minutes, everywhere a password is checked."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-only"


def sign_in(username: str, password: str, ip: str = "203.0.113.7"):
    return Client(REMOTE_ADDR=ip).post("/login/", {"username": username, "password": password})


def token(api, username: str, password: str, ip: str = "203.0.113.7"):
    return api().post("/api/auth/token/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_five_failed_sign_ins_lock_the_user_name_even_for_the_right_password():
    make_user("alice")
    for _ in range(4):
        response = sign_in("alice", "wrong")
        assert response.status_code == 200 and "do not match" in response.content.decode()
    response = sign_in("alice", "wrong")
    assert "Too many failed sign-ins. Please wait 15 minutes" in response.content.decode()
    response = sign_in("alice", PASSWORD)
    assert response.status_code == 200, "the right password does not get in while locked"
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in response.client.session


def test_the_lock_is_per_address_and_per_user_name():
    make_user("alice")
    make_user("bob")
    for _ in range(5):
        sign_in("alice", "wrong", ip="203.0.113.7")
    assert sign_in("alice", PASSWORD, ip="198.51.100.2").status_code == 302, "another address still signs in"
    assert sign_in("bob", PASSWORD, ip="203.0.113.7").status_code == 302, "another user from that address too"
    # The user name is compared case-insensitively, so changing case does not reset the count.
    assert "Too many failed" in sign_in("ALICE", PASSWORD, ip="203.0.113.7").content.decode()


def test_a_successful_sign_in_forgets_earlier_failures():
    make_user("alice")
    for _ in range(4):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 302
    for _ in range(4):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 302, "4 + 4 failures around a success never reach 5 in a row"


def test_the_lock_expires(settings):
    settings.PREFLOOP_LOGIN_LOCKOUT_SECONDS = 1
    make_user("alice")
    for _ in range(5):
        sign_in("alice", "wrong")
    assert sign_in("alice", PASSWORD).status_code == 200
    time.sleep(1.2)
    assert sign_in("alice", PASSWORD).status_code == 302


def test_the_api_token_endpoint_counts_and_answers_429_while_locked(api):
    make_user("alice")
    statuses = [token(api, "alice", "wrong").status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]
    response = token(api, "alice", PASSWORD)
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert response.json()["error"] == "locked" and "token" not in response.json()
    # Failures on the web page and on the API add up: it is one counter per (user name, address).
    make_user("bob")
    for _ in range(3):
        sign_in("bob", "wrong")
    assert [token(api, "bob", "wrong").status_code for _ in range(2)] == [400, 429]


def test_password_spraying_from_one_address_locks_the_address(settings):
    settings.PREFLOOP_LOGIN_IP_MAX_FAILURES = 6
    make_user("carol")
    for i in range(6):  # one guess per user name: no single name reaches 5
        sign_in(f"someone{i}", "wrong")
    assert "Too many failed" in sign_in("carol", PASSWORD).content.decode()
    assert sign_in("carol", PASSWORD, ip="198.51.100.2").status_code == 302


def test_the_admin_sign_in_is_behind_the_same_lock():
    make_user("root", role="admin")
    from annotate.models import User

    User.objects.filter(username="root").update(is_staff=True, is_superuser=True)
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in client.session
