"""DRF serializers of the rewards API: versions out, training options and scoring requests in."""

from __future__ import annotations

from rest_framework import serializers

from rewards.models import RewardModel, RewardSettings
from rewards.selectors import held_out_summary
from rewards.services import MAX_SCORE_ITEMS


class RewardModelSerializer(serializers.ModelSerializer):
    parent_version = serializers.IntegerField(source="parent.version", allow_null=True, default=None)
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    data = serializers.SerializerMethodField()  # type: ignore[assignment]  # a field named like Serializer.data
    held_out = serializers.SerializerMethodField(
        help_text="Held-out accuracy, its 95 % Wilson interval (accuracy_ci), the held-out pair count and the "
        "project's fixed split; null before the version is trained."
    )

    class Meta:
        model = RewardModel
        fields = [
            "id",
            "project",
            "version",
            "status",
            "is_current",
            "base_model",
            "parent",
            "parent_version",
            "trigger",
            "options",
            "data",
            "held_out",
            "metrics",
            "job_id",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_held_out(self, obj: RewardModel) -> dict | None:
        return held_out_summary(obj)

    def get_data(self, obj: RewardModel) -> dict:
        # The full pair-id list stays in the detail view; lists get the counts and digest.
        return {k: v for k, v in obj.data_snapshot.items() if k != "pair_ids"}


class RewardModelDetailSerializer(RewardModelSerializer):
    class Meta(RewardModelSerializer.Meta):
        fields = RewardModelSerializer.Meta.fields + ["data_snapshot", "curves", "artifact_path"]


class TrainRequestSerializer(serializers.Serializer):
    options = serializers.DictField(
        required=False, default=dict, help_text="RewardTrainConfig fields and data filters."
    )


class ImportRequestSerializer(serializers.Serializer):
    model_path = serializers.CharField(
        max_length=300, help_text="A sequence-classification folder under PREFLOOP_MODEL_ROOTS."
    )
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class ScoreItemSerializer(serializers.Serializer):
    prompt = serializers.CharField(allow_blank=True, trim_whitespace=False)
    response = serializers.CharField(allow_blank=True, trim_whitespace=False)


class ScoreRequestSerializer(serializers.Serializer):
    completion_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),  # a row id (SQLite overflows past 2**63)
        required=False,
        max_length=MAX_SCORE_ITEMS,
    )
    items = ScoreItemSerializer(many=True, required=False, max_length=MAX_SCORE_ITEMS)  # type: ignore[call-arg]  # ListSerializer takes it

    def validate(self, attrs):
        if ("completion_ids" in attrs) == ("items" in attrs):
            raise serializers.ValidationError("give exactly one of completion_ids or items")
        return attrs


class RewardSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = RewardSettings
        fields = ["auto_retrain", "default_options"]
