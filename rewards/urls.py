"""URLs of the rewards API (mounted at /api/)."""

from django.urls import path

from rewards import api

urlpatterns = [
    path("projects/<int:project_id>/reward-models/", api.RewardModelListApi.as_view(), name="reward-model-list"),
    path(
        "projects/<int:project_id>/reward-models/import/",
        api.RewardModelImportApi.as_view(),
        name="reward-model-import",
    ),
    path("projects/<int:project_id>/reward-settings/", api.RewardSettingsApi.as_view(), name="reward-settings"),
    path("reward-models/<int:reward_model_id>/", api.RewardModelDetailApi.as_view(), name="reward-model-detail"),
    path(
        "reward-models/<int:reward_model_id>/make-current/",
        api.RewardModelMakeCurrentApi.as_view(),
        name="reward-model-make-current",
    ),
    path("reward-models/<int:reward_model_id>/score/", api.RewardModelScoreApi.as_view(), name="reward-model-score"),
]
