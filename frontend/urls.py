"""URLs of the web UI: sign-in, set-password (invitations), project list, annotator queue, researcher dashboard."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from frontend import import_views, manage_views, record_views, views
from prefloop.accounts.views import LoginView

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", LoginView.as_view(), name="login"),  # with the login lockout
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("prefloop.accounts.urls")),  # invitations' set-password page; no sign-up
    path("projects/", views.project_list, name="projects"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/annotate/next/", views.annotate_next, name="annotate-next"),
    path("projects/<int:project_id>/annotate/last/", views.annotate_last, name="annotate-last"),
    path("projects/<int:project_id>/dashboard/", views.dashboard, name="dashboard"),
    path("projects/new/", manage_views.project_new, name="project-new"),
    path("projects/<int:project_id>/settings/", manage_views.project_settings, name="project-settings"),
    path("projects/<int:project_id>/members/", manage_views.project_members, name="project-members-page"),
    path("projects/<int:project_id>/members/add/", manage_views.member_add, name="project-member-add"),
    path("projects/<int:project_id>/members/<int:user_id>/", manage_views.member_update, name="project-member-update"),
    path("projects/<int:project_id>/imports/", import_views.project_imports, name="project-imports-page"),
    path("projects/<int:project_id>/imports/preview/", import_views.import_preview, name="project-import-preview"),
    path("projects/<int:project_id>/imports/confirm/", import_views.import_confirm, name="project-import-confirm"),
    path(
        "projects/<int:project_id>/imports/<int:import_id>/", import_views.import_change, name="project-import-change"
    ),
    path("projects/<int:project_id>/records/", record_views.project_records, name="project-records"),
    path(
        "projects/<int:project_id>/records/export/", record_views.project_records_export, name="project-records-export"
    ),
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
    path("projects/<int:project_id>/quality/", views.quality, name="quality"),
]
