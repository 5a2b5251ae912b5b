"""URLs of the training API (mounted at /api/)."""

from django.urls import path

from training import api

urlpatterns = [
    path("projects/<int:project_id>/policies/", api.PolicyListApi.as_view(), name="policy-list"),
    path("projects/<int:project_id>/loop/", api.LoopApi.as_view(), name="loop"),
    path("projects/<int:project_id>/rounds/", api.RoundListApi.as_view(), name="round-list"),
    path("policies/<int:policy_id>/", api.PolicyDetailApi.as_view(), name="policy-detail"),
    path("rounds/<int:round_id>/", api.RoundDetailApi.as_view(), name="round-detail"),
    path("rounds/<int:round_id>/advance/", api.RoundAdvanceApi.as_view(), name="round-advance"),
    path("rounds/<int:round_id>/cancel/", api.RoundCancelApi.as_view(), name="round-cancel"),
    path("rounds/<int:round_id>/override-guard/", api.RoundOverrideGuardApi.as_view(), name="round-override-guard"),
]
