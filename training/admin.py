from django.contrib import admin

from training.models import AIFeedback, Loop, Policy, Round


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "version", "method", "status", "parent", "created_at")
    list_filter = ("method", "status")
    raw_id_fields = ("project", "parent", "round", "created_by")


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "number", "method", "state", "policy", "new_policy", "created_at")
    list_filter = ("state", "method")
    raw_id_fields = ("project", "policy", "new_policy", "reward_model", "created_by")


@admin.register(Loop)
class LoopAdmin(admin.ModelAdmin):
    list_display = ("project", "reference", "current", "updated_at")
    raw_id_fields = ("project", "reference", "current")


@admin.register(AIFeedback)
class AIFeedbackAdmin(admin.ModelAdmin):
    list_display = ("comparison", "reward_model", "winner", "margin", "probability")
    raw_id_fields = ("comparison", "reward_model", "winner", "loser")
