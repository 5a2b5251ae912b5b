"""URLs of the web UI: sign-in, project list, annotator queue, researcher dashboard."""
from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="frontend/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/", views.project_list, name="projects"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/annotate/next/", views.annotate_next, name="annotate-next"),
    path("projects/<int:project_id>/dashboard/", views.dashboard, name="dashboard"),
    path("projects/<int:project_id>/leaderboard/", views.leaderboard, name="leaderboard"),
    path("projects/<int:project_id>/quality/", views.quality, name="quality"),
]
