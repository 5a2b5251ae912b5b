"""URLs of the rewards web pages (mounted at the site root)."""

from django.urls import path

from rewards import downloads, views

urlpatterns = [
    path("projects/<int:project_id>/reward-models/", views.reward_models_page, name="reward-models-page"),
    path("projects/<int:project_id>/reward-models/retrain/", views.retrain, name="reward-models-retrain"),
    path("projects/<int:project_id>/reward-models/import/", views.import_reward_model, name="reward-models-import"),
    path("projects/<int:project_id>/reward-models/settings/", views.update_settings, name="reward-models-settings"),
    path(
        "projects/<int:project_id>/reward-models/<int:reward_model_id>/make-current/",
        views.make_current,
        name="reward-models-make-current",
    ),
    path(
        "projects/<int:project_id>/reward-models/<int:reward_model_id>/artifact.zip",
        downloads.reward_model_artifact,
        name="reward-models-artifact",
    ),
    path(
        "projects/<int:project_id>/reward-models/<int:reward_model_id>/charts/<slug:chart>.svg",
        downloads.reward_model_chart,
        name="reward-models-chart",
    ),
]
