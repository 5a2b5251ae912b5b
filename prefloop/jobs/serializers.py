from rest_framework import serializers

from prefloop.jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "params", "status", "progress", "message", "result", "error", "project",
            "created_by", "created_at", "started_at", "finished_at", "heartbeat_at", "worker", "attempts",
            "cancel_requested",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log_tail"]
        read_only_fields = fields
