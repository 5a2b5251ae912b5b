"""DRF serializers: input validation and output shapes of the annotate API."""
from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from annotate.models import Comparison, Project, Vote


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = [
            "id", "name", "instructions", "overlap_target", "allow_tie", "allow_both_bad", "strength_scale",
            "rationale", "aspects", "lease_seconds", "annotator_cap", "gold_rate", "gold_min_accuracy",
            "gold_min_answers", "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        # Bounds the database (and the model's check constraints) would otherwise refuse with a 500.
        extra_kwargs = {
            "overlap_target": {"min_value": 1, "max_value": 1000},
            "strength_scale": {"min_value": 0, "max_value": 10},
            "lease_seconds": {"min_value": 10, "max_value": 7 * 24 * 3600},
            "annotator_cap": {"min_value": 0, "max_value": 2**31 - 1},
            "gold_rate": {"min_value": 0.0, "max_value": 1.0},
            "gold_min_accuracy": {"min_value": 0.0, "max_value": 1.0},
            "gold_min_answers": {"min_value": 0, "max_value": 1000},
        }

    def validate_aspects(self, value):
        if not isinstance(value, list) or not all(isinstance(a, str) and 0 < len(a) <= 64 for a in value):
            raise serializers.ValidationError("must be a list of names of 1-64 characters")
        if len(set(value)) != len(value):
            raise serializers.ValidationError("must not repeat a name")
        return value


class AnnotatorProjectSerializer(serializers.ModelSerializer):
    """What an annotator may know about a project."""

    class Meta:
        model = Project
        fields = ["id", "name", "instructions", "aspects", "allow_tie", "allow_both_bad", "strength_scale", "rationale"]


class AnnotatorProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    today = serializers.IntegerField()
    cap = serializers.IntegerField(allow_null=True)


class AnnotatorProjectWithProgressSerializer(AnnotatorProjectSerializer):
    progress = AnnotatorProgressSerializer(read_only=True)

    class Meta(AnnotatorProjectSerializer.Meta):
        fields = AnnotatorProjectSerializer.Meta.fields + ["progress"]


# GET /api/projects/{id}/: researchers and admins get the settings, annotators the rules and their progress.
PROJECT_FOR_MEMBER = PolymorphicProxySerializer(
    component_name="ProjectForMember", serializers=[ProjectSerializer, AnnotatorProjectWithProgressSerializer],
    resource_type_field_name=None,
)


class MembershipInputSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=["annotator", "researcher"], default="annotator")
    cap = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    paused = serializers.BooleanField(required=False, allow_null=True, default=None)


class GoldInputSerializer(serializers.Serializer):
    label = serializers.ChoiceField(choices=["", "winner", "tie", "both_bad"])
    winner_completion_id = serializers.IntegerField(required=False, allow_null=True, default=None)


class NextInputSerializer(serializers.Serializer):
    exclude = serializers.ListField(child=serializers.IntegerField(), required=False, default=list, max_length=10)


class AspectVoteSerializer(serializers.Serializer):
    aspect = serializers.CharField(max_length=64)
    choice = serializers.CharField(required=False, allow_null=True, default=None)
    ranking = serializers.ListField(child=serializers.CharField(max_length=1), required=False, allow_null=True, default=None)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)


class VoteInputSerializer(serializers.Serializer):
    """Either `votes` (one per aspect) or, for a one-aspect project, `choice`/`ranking` at the top."""

    idempotency_key = serializers.CharField(max_length=64, required=False)
    votes = AspectVoteSerializer(many=True, required=False)
    choice = serializers.CharField(required=False, allow_null=True, default=None)
    ranking = serializers.ListField(child=serializers.CharField(max_length=1), required=False, allow_null=True, default=None)
    strength = serializers.IntegerField(required=False, allow_null=True, default=None)
    rationale = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)
    time_spent_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0, max_value=86_400_000)


class VoteOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Vote
        fields = ["id", "aspect", "choice", "strength", "rationale", "created_at"]


class ComparisonProgressSerializer(serializers.ModelSerializer):
    prompt_id = serializers.IntegerField()
    models = serializers.SerializerMethodField()
    completions = serializers.SerializerMethodField()

    class Meta:
        model = Comparison
        fields = [
            "id", "prompt_id", "round", "priority", "is_open", "is_complete", "imported_votes", "votes_done",
            "leases_open", "models", "completions", "gold_label", "gold_winner_id",
        ]

    def get_models(self, obj) -> list[str]:
        return [c["model"] for c in self.context["completions"].get(obj.pk, [])]

    def get_completions(self, obj) -> list[dict]:
        return self.context["completions"].get(obj.pk, [])


class ResearcherVoteSerializer(serializers.ModelSerializer):
    annotator = serializers.SerializerMethodField()
    winner_model = serializers.CharField(source="winner.model_name", default=None)
    loser_model = serializers.CharField(source="loser.model_name", default=None)

    class Meta:
        model = Vote
        fields = [
            "id", "comparison_id", "annotator", "source", "aspect", "choice", "ranking", "ranking_ties", "strength", "rationale",
            "shown_order", "winner_id", "loser_id", "winner_model", "loser_model", "time_spent_ms", "created_at",
        ]

    def get_annotator(self, obj) -> str:
        return obj.annotator.username if obj.annotator_id else obj.external_annotator


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.CharField(required=False, allow_blank=True, default="")
    pairing = serializers.CharField(required=False, default="all")
    pairs_per_prompt = serializers.IntegerField(required=False, min_value=1, default=2)
    round = serializers.IntegerField(required=False, min_value=0, default=0)
    priority = serializers.IntegerField(required=False, default=0)


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["jsonl", "parquet", "csv"], default="jsonl")
    raw = serializers.BooleanField(default=False)
    rule = serializers.ChoiceField(choices=["majority", "bt", "unanimous"], default="majority")
    ties = serializers.ChoiceField(choices=["label", "drop", "both-orders"], default="label")
    conversational = serializers.BooleanField(default=False)
    round = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=2**31 - 1), required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    min_agreement = serializers.FloatField(required=False, min_value=0, max_value=1)
    annotator = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    aspect = serializers.CharField(required=False, allow_blank=True, max_length=64)
