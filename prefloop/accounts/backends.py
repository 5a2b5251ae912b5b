"""The authentication backend: Django's ModelBackend behind the login lockout.

Every password check goes through `django.contrib.auth.authenticate` and so through here: the web
sign-in page, the admin's, and the API's `POST /api/auth/token/`. Tokens and sessions are checked
elsewhere and never count as failures.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from prefloop.accounts import lockout


class LockoutModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        ip = lockout.client_ip(request)
        if lockout.is_locked(username=username, ip=ip):
            return None  # the password is not even checked while locked
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            lockout.record_failure(username=username, ip=ip)
        else:
            lockout.clear(username=username, ip=ip)
        return user
