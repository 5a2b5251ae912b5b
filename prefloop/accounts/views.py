"""Sign-in (with the lockout's message) and the one-time set-password page of an invitation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.urls import reverse_lazy

from prefloop.accounts.forms import LockoutAuthenticationForm


class LoginView(auth_views.LoginView):
    template_name = "frontend/login.html"
    authentication_form = LockoutAuthenticationForm
    redirect_authenticated_user = True


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """Django's password-reset confirmation: the link works once, then the token no longer matches."""

    template_name = "frontend/set_password.html"
    success_url = reverse_lazy("login")
    reset_url_token = "set-password"

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set. Sign in with it now.")
        return response
