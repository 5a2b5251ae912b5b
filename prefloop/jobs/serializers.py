from rest_framework import serializers

from prefloop.jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    """context["positions"] (selectors.queue_positions of a page) saves one query per queued job."""

    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    queue = serializers.SerializerMethodField(help_text="The queue the job runs on.")
    ahead = serializers.SerializerMethodField(
        help_text="Queued jobs only: queued or running jobs of the same queue before it; null otherwise."
    )

    def get_queue(self, job) -> str:
        from prefloop.jobs.services import job_queue

        return job_queue(job)

    def get_ahead(self, job) -> int | None:
        from prefloop.jobs.selectors import queue_position

        positions = self.context.get("positions")
        return positions.get(job.pk) if positions is not None else queue_position(job)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "params",
            "status",
            "progress",
            "message",
            "result",
            "error",
            "project",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "worker",
            "attempts",
            "cancel_requested",
            "queue",
            "ahead",
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log_tail"]
        read_only_fields = fields
