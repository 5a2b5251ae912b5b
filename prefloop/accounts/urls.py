"""Account URLs (mounted at /accounts/): only the invitation's set-password page. No sign-up."""

from django.urls import path

from prefloop.accounts import views

urlpatterns = [path("set-password/<uidb64>/<token>/", views.SetPasswordView.as_view(), name="set-password")]
