"""REST endpoint of the system leaderboard: the numbers behind the dashboard's CI plot and heat maps."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate.leaderboard.compute import LeaderboardInputError, LeaderboardOptions
from annotate.leaderboard.data import VoteFilter, project_leaderboard
from annotate.models import Membership

MAX_ROUNDS = 1000  # a request, not a batch job: 1,000 rounds of 1M battles is still ~3 s


class LeaderboardQuerySerializer(serializers.Serializer):
    bootstrap = serializers.IntegerField(min_value=0, max_value=MAX_ROUNDS, default=100)
    seed = serializers.IntegerField(min_value=0, default=0)
    anchor = serializers.RegexField(r"^.+=[-+]?\d+(\.\d+)?$", required=False, help_text="MODEL=RATING, e.g. gpt4=1200")
    exclude_ties = serializers.BooleanField(default=False)
    style_control = serializers.BooleanField(default=False)
    elo = serializers.BooleanField(default=False, help_text="also the online Elo (K=4) over votes in order")
    aspect = serializers.CharField(required=False)
    labels = serializers.ChoiceField(
        choices=["human", "judge", "both"],
        default="human",
        help_text="human votes only, LLM-judge verdicts only, or both",
    )
    round = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=2**31 - 1), required=False)

    def to_internal_value(self, data):
        # ?round=1&round=2 arrives as a QueryDict list
        if hasattr(data, "getlist"):
            data = {**data.dict(), **({"round": data.getlist("round")} if "round" in data else {})}
        return super().to_internal_value(data)


class ProjectLeaderboardApi(APIView):
    """Bradley-Terry ratings with bootstrap CIs and CI-based rank, win-rate matrix and battle counts
    (researchers of the project). Every response says how it was computed under `method`."""

    @extend_schema(parameters=[LeaderboardQuerySerializer], responses=dict)
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=Membership.Role.RESEARCHER)
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        if q.get("aspect") and q["aspect"] not in project.aspect_names:
            raise serializers.ValidationError(
                {"aspect": [f"not an aspect of this project: {', '.join(project.aspect_names)}"]}
            )
        model, _, rating = q["anchor"].rpartition("=") if q.get("anchor") else (None, None, None)
        options = LeaderboardOptions(
            bootstrap=q["bootstrap"],
            seed=q["seed"],
            anchor=(model, float(rating)) if model and rating else None,
            exclude_ties=q["exclude_ties"],
            style_control=q["style_control"],
            online_elo=q["elo"],
        )
        filters = VoteFilter(
            aspect=q.get("aspect"), rounds=tuple(q["round"]) if q.get("round") else None, labels=q["labels"]
        )
        try:
            result = project_leaderboard(project, filters=filters, options=options)
        except LeaderboardInputError as exc:
            raise serializers.ValidationError({"anchor" if options.anchor else "detail": [str(exc)]}) from exc
        return Response(result.as_dict())
