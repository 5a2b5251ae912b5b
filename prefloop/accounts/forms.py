"""The sign-in form: Django's, with a message of its own while the lockout holds."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from prefloop.accounts import lockout


class LockoutAuthenticationForm(AuthenticationForm):
    is_locked = False

    def _locked(self) -> bool:
        username = self.cleaned_data.get("username")
        return bool(username) and lockout.is_locked(username=str(username), ip=lockout.client_ip(self.request))

    def _locked_error(self) -> forms.ValidationError:
        self.is_locked = True
        minutes = max(1, lockout.policy().lockout_seconds // 60)
        return forms.ValidationError(
            f"Too many failed sign-ins. Please wait {minutes} minutes and try again.", code="locked"
        )

    def clean(self):
        if self._locked():
            raise self._locked_error()
        try:
            return super().clean()
        except forms.ValidationError:
            if self._locked():  # this failure was the one that locked it
                raise self._locked_error() from None
            raise
