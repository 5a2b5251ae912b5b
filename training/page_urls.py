"""URLs of the training web pages (mounted at the site root)."""

from django.urls import path

from training import downloads, views

urlpatterns = [
    path("projects/<int:project_id>/loop/", views.loop_page, name="loop-page"),
    path("projects/<int:project_id>/loop/status/", views.loop_status, name="loop-status"),
    path("projects/<int:project_id>/loop/rounds/", views.start_round, name="loop-start-round"),
    path(
        "projects/<int:project_id>/loop/rounds/<int:round_id>/advance/", views.advance_round, name="loop-advance-round"
    ),
    path("projects/<int:project_id>/loop/rounds/<int:round_id>/cancel/", views.cancel_round, name="loop-cancel-round"),
    path(
        "projects/<int:project_id>/loop/rounds/<int:round_id>/override-guard/",
        views.override_guard,
        name="loop-override-guard",
    ),
    path("projects/<int:project_id>/loop/demo-policy/", views.build_demo_policy, name="loop-demo-policy"),
    path("projects/<int:project_id>/loop/models/", views.register_model, name="loop-register-model"),
    path("projects/<int:project_id>/loop/charts/<slug:chart>.svg", downloads.loop_chart, name="loop-chart"),
    path(
        "projects/<int:project_id>/policies/<int:policy_id>/artifact.zip",
        downloads.policy_artifact,
        name="policy-artifact",
    ),
]
