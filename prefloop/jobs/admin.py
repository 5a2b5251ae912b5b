"""Admin view of jobs, for operators (read-mostly)."""

from django.contrib import admin

from prefloop.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "progress", "message", "project", "created_by", "created_at", "worker"]
    list_filter = ["status", "kind"]
    search_fields = ["kind", "message", "error"]
    raw_id_fields = ["project", "created_by"]
    readonly_fields = ["started_at", "finished_at", "heartbeat_at", "attempts"]
