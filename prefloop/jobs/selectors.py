"""Who may see which job: its creator, researchers of its project, admins. Anyone else: NotFound."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from annotate import selectors as annotate_selectors
from annotate.errors import NotFound
from annotate.models import Membership
from prefloop.jobs.models import Job


def jobs_for_user(user, *, project_id: int | None = None) -> QuerySet[Job]:
    jobs = Job.objects.select_related("project", "created_by")
    if not user.is_admin:
        researched = annotate_selectors.projects_for_user(user, role=Membership.Role.RESEARCHER)
        jobs = jobs.filter(Q(created_by=user) | Q(project__in=researched.values("pk")))
    if project_id is not None:
        jobs = jobs.filter(project_id=project_id)
    return jobs.order_by("-created_at", "-id")


def user_can_see_job(user, job: Job) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_admin or (job.created_by_id is not None and job.created_by_id == user.pk):
        return True
    if job.project_id is None:
        return False
    try:
        annotate_selectors.project_for_user(user, job.project_id, role=Membership.Role.RESEARCHER)
    except NotFound:
        return False
    return True


def job_for_user(user, job_id: int) -> Job:
    job = Job.objects.select_related("project", "created_by").filter(pk=job_id).first()
    if job is None or not user_can_see_job(user, job):
        raise NotFound("No such job.")
    return job
