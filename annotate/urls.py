"""URLs of the machine API (mounted at /api/)."""

from django.urls import path

from annotate import api, api_corrections, api_leaderboard

urlpatterns = [
    path("projects/", api.ProjectListApi.as_view(), name="project-list"),
    path("projects/<int:project_id>/", api.ProjectDetailApi.as_view(), name="project-detail"),
    path("projects/<int:project_id>/progress/", api.ProjectProgressApi.as_view(), name="project-progress"),
    path("projects/<int:project_id>/comparisons/", api.ProjectComparisonsApi.as_view(), name="project-comparisons"),
    path("projects/<int:project_id>/votes/", api.ProjectVotesApi.as_view(), name="project-votes"),
    path("projects/<int:project_id>/members/", api.ProjectMembersApi.as_view(), name="project-members"),
    path("projects/<int:project_id>/imports/", api.ProjectImportApi.as_view(), name="project-imports"),
    path("projects/<int:project_id>/export/", api.ProjectExportApi.as_view(), name="project-export"),
    path("projects/<int:project_id>/next/", api.NextAssignmentApi.as_view(), name="assignment-next"),
    path("projects/<int:project_id>/my-votes/", api.MyVotesApi.as_view(), name="my-votes"),
    path("projects/<int:project_id>/quality/", api.ProjectQualityApi.as_view(), name="project-quality"),
    path("comparisons/<int:comparison_id>/gold/", api.ComparisonGoldApi.as_view(), name="comparison-gold"),
    path("assignments/<int:assignment_id>/vote/", api.AssignmentVoteApi.as_view(), name="assignment-vote"),
    # An annotator's corrections (annotate/api_corrections.py)
    path("assignments/<int:assignment_id>/skip/", api_corrections.AssignmentSkipApi.as_view(), name="assignment-skip"),
    path(
        "assignments/<int:assignment_id>/edit/", api_corrections.AssignmentEditVoteApi.as_view(), name="assignment-edit"
    ),
    path("projects/<int:project_id>/my-last-vote/", api_corrections.MyLastVoteApi.as_view(), name="my-last-vote"),
    path(
        "projects/<int:project_id>/leaderboard/",
        api_leaderboard.ProjectLeaderboardApi.as_view(),
        name="project-leaderboard",
    ),
]
