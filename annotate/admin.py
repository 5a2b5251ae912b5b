"""Admin pages for the annotate models but the user (read-mostly views for operators)."""

from django.contrib import admin

from annotate import models

# The user admin (with its set-password-link action) is the accounts app's: prefloop/accounts/admin.py.


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "overlap_target", "rationale", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role", "cap"]
    list_filter = ["role", "project"]
    raw_id_fields = ["user", "project"]


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "key", "category"]
    list_filter = ["project", "category"]
    search_fields = ["text", "key"]


@admin.register(models.Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_name", "source", "round", "text_available"]
    list_filter = ["source", "model_name", "text_available"]
    raw_id_fields = ["prompt"]
    search_fields = ["text"]


class ComparisonItemInline(admin.TabularInline):
    model = models.ComparisonItem
    extra = 0
    raw_id_fields = ["completion"]


@admin.register(models.Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "round", "priority", "imported_votes", "votes_done", "leases_open", "is_complete"]
    list_filter = ["project", "round", "is_open", "is_complete"]
    raw_id_fields = ["prompt"]
    inlines = [ComparisonItemInline]


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "state", "leased_until", "completed_at"]
    list_filter = ["state", "project"]
    raw_id_fields = ["comparison", "annotator", "project"]


@admin.register(models.Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ["id", "comparison", "annotator", "external_annotator", "aspect", "choice", "strength", "source"]
    list_filter = ["source", "choice", "aspect"]
    raw_id_fields = ["comparison", "assignment", "annotator", "winner", "loser"]
    search_fields = ["external_annotator", "rationale"]


@admin.register(models.VoteEdit)
class VoteEditAdmin(admin.ModelAdmin):
    """The audit trail of edited votes: the values each edit replaced."""

    list_display = ["id", "vote", "choice", "strength", "voted_at", "edited_at"]
    raw_id_fields = ["vote", "winner", "loser"]


@admin.register(models.DataImport)
class DataImportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "format", "state", "created_by", "created_at"]
    list_filter = ["state", "project"]
    raw_id_fields = ["project", "created_by"]
