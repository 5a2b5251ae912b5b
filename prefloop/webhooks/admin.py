from typing import Any

from django.contrib import admin

from prefloop.webhooks.models import Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Read and pause here; create them on the project's Webhooks page (which makes the secret)."""

    list_display = ("id", "project", "url", "active", "created_at")
    exclude = ("secret",)
    readonly_fields = ("project", "created_by", "last_milestone")

    def has_add_permission(self, request: Any) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "webhook", "event", "status", "attempts", "last_status_code", "created_at")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False
