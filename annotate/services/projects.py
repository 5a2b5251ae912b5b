"""Projects and their members."""
from __future__ import annotations

from django.db import transaction
from django.db.models import F, Q

from annotate.errors import InvalidVote
from annotate.models import Comparison, Membership, Project, User


@transaction.atomic
def project_create(*, name: str, created_by: User | None = None, **settings) -> Project:
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
        raise InvalidVote("overlap_target", "must be at least 1")
    Project.objects.filter(pk=project.pk).update(overlap_target=overlap_target)
    comparisons = Comparison.objects.filter(project=project)
    reached = Q(imported_votes__gte=overlap_target - F("votes_done"))
    comparisons.filter(reached).update(is_complete=True)
    comparisons.exclude(reached).update(is_complete=False)
    project.refresh_from_db()
    return project


def membership_set(
    *, project: Project, user: User, role: str = Membership.Role.ANNOTATOR, cap: int | None = None
) -> Membership:
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role, "cap": cap})
    return membership
