"""Page URLs of the judging app (the Quality tab's forms)."""

from django.urls import path

from judging import views

urlpatterns = [
    path("projects/<int:project_id>/quality/judge/", views.judge_settings, name="judge-settings-page"),
    path("projects/<int:project_id>/quality/judge/run/", views.judge_run, name="judge-run-page"),
]
