"""Projects and their members."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Q

from annotate.models import Comparison, Membership, Project, User
from prefloop.core.errors import InvalidSetting

ASPECT_COLUMN_LENGTH = 64  # Vote.aspect's max_length: no setting can lengthen a name past it


def check_aspects(aspects) -> list[str]:
    """A list of distinct names, at most PREFLOOP_LIMITS["project.aspects"] of them (every one is a
    voting column of the annotator's form and a unit of every statistic), each 1..project.aspect_name_length
    characters. Raises InvalidSetting("aspects", ...) naming the field."""
    from prefloop.limits import limit

    most, longest = (limit("project.aspects"), min(limit("project.aspect_name_length"), ASPECT_COLUMN_LENGTH))
    if not isinstance(aspects, list) or not all(isinstance(a, str) and 0 < len(a) <= longest for a in aspects):
        raise InvalidSetting("aspects", f"must be a list of names of 1-{longest} characters")
    if len(aspects) > most:
        raise InvalidSetting("aspects", f"at most {most} aspects (PREFLOOP_LIMITS), got {len(aspects)}")
    if len(set(aspects)) != len(aspects):
        raise InvalidSetting("aspects", "must not repeat a name")
    return aspects


@transaction.atomic
def project_create(*, name: str, created_by: User | None = None, **settings) -> Project:
    check_aspects(settings.get("aspects", []))
    project = Project(name=name, created_by=created_by, **settings)
    project.full_clean()
    project.save()
    if created_by is not None and not created_by.is_admin:
        Membership.objects.create(project=project, user=created_by, role=Membership.Role.RESEARCHER)
    return project


@transaction.atomic
def project_set_overlap_target(*, project: Project, overlap_target: int) -> Project:
    """Change the overlap target and recompute which comparisons are complete."""
    if overlap_target < 1:
        raise InvalidSetting("overlap_target", "must be at least 1")
    Project.objects.filter(pk=project.pk).update(overlap_target=overlap_target)
    comparisons = Comparison.objects.filter(project=project)
    reached = Q(imported_votes__gte=overlap_target - F("votes_done"))
    comparisons.filter(reached).update(is_complete=True)
    comparisons.exclude(reached).update(is_complete=False)
    project.refresh_from_db()
    return project


def membership_set(
    *,
    project: Project,
    user: User,
    role: str = Membership.Role.ANNOTATOR,
    cap: int | None = None,
    paused: bool | None = None,
) -> Membership:
    defaults: dict = {"role": role, "cap": cap}
    if paused is not None:  # resuming clears the reason; pausing by hand records it
        defaults.update(paused=paused, paused_reason="paused by a researcher" if paused else "")
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults=defaults)
    return membership


@transaction.atomic
def comparison_set_gold(*, comparison: Comparison, label: str, winner_completion_id: int | None = None) -> Comparison:
    """Mark a comparison as a gold check with a known answer ("winner", "tie", "both_bad"), or unmark ("")."""
    if label not in ("", "winner", "tie", "both_bad"):
        raise InvalidSetting("label", 'must be "winner", "tie", "both_bad" or "" (not gold)')
    members = set(comparison.items.values_list("completion_id", flat=True))
    if label == "winner" and winner_completion_id not in members:
        raise InvalidSetting("winner_completion_id", f"must be one of this comparison's completions {sorted(members)}")
    if label != "winner" and winner_completion_id is not None:
        raise InvalidSetting("winner_completion_id", 'only for label "winner"')
    comparison = Comparison.objects.select_for_update().get(pk=comparison.pk)
    comparison.gold_label = label
    comparison.gold_winner_id = winner_completion_id if label == "winner" else None
    taken = comparison.imported_votes + comparison.votes_done
    comparison.is_complete = not label and taken >= comparison.project.overlap_target
    comparison.save(update_fields=["gold_label", "gold_winner", "is_complete"])
    return comparison


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    """Change a project's settings (validated by the caller's serializer, then by the model's own
    checks). A new overlap target recomputes which comparisons are complete."""
    overlap_target = fields.pop("overlap_target", None)
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean(exclude=["overlap_target"])
    project.save(update_fields=list(fields) or None)
    if overlap_target is not None and overlap_target != project.overlap_target:
        project = project_set_overlap_target(project=project, overlap_target=overlap_target)
    return project


def membership_remove(*, project: Project, user: User) -> bool:
    """Take `user` out of `project`: their votes stay; their open leases are released at once
    (each under its comparison's row lock, the order every counter change uses)."""
    from annotate.models import Assignment

    with transaction.atomic():
        removed, _ = Membership.objects.filter(project=project, user=user).delete()
    open_leases = Assignment.objects.filter(project=project, annotator=user, state=Assignment.State.LEASED)
    for comparison_id in open_leases.order_by("comparison_id").values_list("comparison_id", flat=True):
        with transaction.atomic():
            Comparison.objects.select_for_update().filter(pk=comparison_id).first()
            released = open_leases.filter(comparison_id=comparison_id).update(state=Assignment.State.EXPIRED)
            if released:
                Comparison.objects.filter(pk=comparison_id).update(leases_open=F("leases_open") - released)
    return bool(removed)
