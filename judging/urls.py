"""URLs of the judging API (mounted at /api/)."""

from django.urls import path

from judging import api

urlpatterns = [
    path("projects/<int:project_id>/judge/", api.JudgeSettingsApi.as_view(), name="judge-settings"),
    path("projects/<int:project_id>/judge/run/", api.JudgeRunApi.as_view(), name="judge-run"),
    path("projects/<int:project_id>/judge/agreement/", api.JudgeAgreementApi.as_view(), name="judge-agreement"),
]
