"""Accounts exist only by invitation: `invite_user` makes the user, a one-time link sets the password."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from annotate.models import Membership, User
from tests.factories import make_project

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "correct horse battery staple 42"


def invite(*args: str) -> str:
    out = StringIO()
    call_command("invite_user", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def set_password(link: str, password: str = NEW_PASSWORD, client: Client | None = None):
    client = client or Client()
    response = client.get(link)
    if response.status_code != 302:
        return response  # the "used or expired" page
    return client.post(response["Location"], {"new_password1": password, "new_password2": password})


def test_an_invited_user_cannot_sign_in_until_they_set_a_password_through_the_link():
    project = make_project()
    link = invite(
        "dana", "--role", "annotator", "--project", str(project.pk), "--base-url", "https://prefloop.example.org"
    )
    assert re.fullmatch(r"https://prefloop\.example\.org/accounts/set-password/[\w-]+/[\w-]+/", link)
    dana = User.objects.get(username="dana")
    assert dana.role == "annotator" and dana.is_active and not dana.has_usable_password()
    assert not dana.is_staff and not dana.is_superuser
    assert Membership.objects.get(user=dana, project=project).role == "annotator"

    response = set_password(link.removeprefix("https://prefloop.example.org"))
    assert response.status_code == 302 and response["Location"] == "/login/"
    dana.refresh_from_db()
    assert dana.check_password(NEW_PASSWORD)
    assert Client().post("/login/", {"username": "dana", "password": NEW_PASSWORD}).status_code == 302


def test_the_link_works_once():
    link = invite("erin", "--role", "researcher")
    assert set_password(link).status_code == 302
    second = set_password(link, password="someone else's choice 99")
    assert second.status_code == 200 and "has been used or has expired" in second.content.decode()
    assert User.objects.get(username="erin").check_password(NEW_PASSWORD)


def test_the_link_expires(settings, monkeypatch):
    link = invite("fay")
    settings.PASSWORD_RESET_TIMEOUT = 60
    from django.contrib.auth.tokens import default_token_generator

    later = default_token_generator._now().timestamp() + 61
    monkeypatch.setattr(default_token_generator, "_now", lambda: __import__("datetime").datetime.fromtimestamp(later))
    response = set_password(link)
    assert response.status_code == 200 and "has been used or has expired" in response.content.decode()
    assert not User.objects.get(username="fay").has_usable_password()


def test_a_weak_password_is_refused_by_the_validators():
    link = invite("gus")
    response = set_password(link, password="password")
    assert response.status_code == 200 and "too common" in response.content.decode()
    assert not User.objects.get(username="gus").has_usable_password()


def test_an_admin_invitation_makes_a_staff_superuser():
    invite("hal", "--role", "admin")
    hal = User.objects.get(username="hal")
    assert hal.is_admin and hal.is_staff and hal.is_superuser


def test_a_taken_or_invalid_user_name_is_refused_naming_the_field():
    invite("ivy")
    with pytest.raises(CommandError, match="username: a user named 'ivy' already exists"):
        invite("ivy")
    with pytest.raises(CommandError, match="username: "):
        invite("not a valid name!")
    assert User.objects.filter(username="ivy").count() == 1


def test_reissue_gives_an_existing_user_a_new_link_and_the_old_one_dies_once_either_is_used():
    old = invite("jo")
    new = invite("jo", "--reissue")
    assert set_password(new).status_code == 302
    assert "has been used or has expired" in set_password(old).content.decode()


def test_an_admin_can_make_a_set_password_link_from_the_user_list():
    invite("kim")
    admin = User.objects.create_user(
        "boss", password="pw-for-tests-only", role="admin", is_staff=True, is_superuser=True
    )
    client = Client()
    client.force_login(admin)
    kim = User.objects.get(username="kim")
    response = client.post(
        "/admin/annotate/user/", {"action": "make_set_password_links", "_selected_action": [kim.pk]}, follow=True
    )
    link = re.search(
        r"Set-password link for kim: http://testserver(/accounts/set-password/[\w-]+/[\w-]+/)",
        response.content.decode(),
    ).group(1)
    assert set_password(link).status_code == 302
    assert User.objects.get(username="kim").check_password(NEW_PASSWORD)
