"""No default accounts, and no way to make one without an admin: sign-up is closed."""

from __future__ import annotations

import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from annotate.models import User

pytestmark = pytest.mark.django_db

SIGNUP_FIELDS = {
    "username": "mallory",
    "password": "Tr0ub4dor&3-long-enough",
    "password1": "Tr0ub4dor&3-long-enough",
    "password2": "Tr0ub4dor&3-long-enough",
    "new_password1": "x",
    "new_password2": "x",
    "email": "m@example.org",
    "role": "admin",
    "is_staff": "on",
    "is_superuser": "on",
}


def test_migrations_create_no_user():
    assert User.objects.count() == 0


def test_demo_refuses_to_create_accounts_under_production_settings(settings):
    settings.PREFLOOP_DEMO_ACCOUNTS = False
    with pytest.raises(CommandError, match="disabled under the production settings"):
        call_command("demo")
    assert User.objects.count() == 0


PARAMETER = re.compile(r"<(?:(\w+):)?\w+>")


def _routes(resolver=None, prefix: str = ""):
    """Every URL of the site with its parameters filled in (ints 1, anything else 'x')."""
    for entry in (resolver or get_resolver()).url_patterns:
        pattern = PARAMETER.sub(lambda m: "1" if m.group(1) == "int" else "x", str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + pattern.lstrip("^"))
        elif isinstance(entry, URLPattern) and "(?P" not in pattern:  # regex routes: the admin's catch-alls
            yield prefix + pattern.lstrip("^").rstrip("$")


def test_no_url_creates_an_account_for_an_anonymous_visitor():
    routes = sorted(set(_routes()))
    assert {"api/auth/token/", "login/", "admin/annotate/user/add/", "accounts/set-password/x/x/"} <= set(routes)
    client = Client(enforce_csrf_checks=False)
    for route in routes:
        client.post(f"/{route}", SIGNUP_FIELDS)
        client.put(f"/{route}", SIGNUP_FIELDS, content_type="application/json")
    assert User.objects.count() == 0, (
        f"an anonymous request created {list(User.objects.values_list('username', flat=True))}"
    )


@pytest.mark.parametrize(
    "path", ["/signup/", "/register/", "/accounts/signup/", "/accounts/register/", "/api/auth/register/", "/api/users/"]
)
def test_there_is_no_sign_up_page(path):
    assert Client().get(path).status_code == 404
