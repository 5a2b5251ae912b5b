"""Who may see which job (its creator, researchers of its project, admins; anyone else: NotFound),
and where a queued job stands in its queue."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from annotate import selectors as annotate_selectors
from annotate.models import Membership
from prefloop.core.errors import NotFound
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


ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)
MAX_QUEUE_SCAN = 5000  # active jobs read to place queued ones; beyond that "ahead" is a lower bound


def queue_positions(jobs) -> dict[int, int]:
    """{queued job id: jobs ahead of it}: queued or running jobs of the same queue created before it
    (a running one holds the worker). One query for any number of jobs; other jobs get no entry."""
    from prefloop.jobs.services import job_queue

    queued = [j for j in jobs if j.status == Job.Status.QUEUED]
    if not queued:
        return {}
    last = max(j.pk for j in queued)
    active = [
        j
        for j in Job.objects.filter(status__in=ACTIVE, pk__lt=last)
        .only("pk", "kind", "params", "status")
        .order_by("pk")[:MAX_QUEUE_SCAN]
    ]
    queue_by_id = {j.pk: job_queue(j) for j in active}
    return {job.pk: sum(1 for i, q in queue_by_id.items() if i < job.pk and q == job_queue(job)) for job in queued}


def queue_position(job: Job) -> int | None:
    """Jobs ahead of `job` in its queue, or None when it is not queued."""
    return queue_positions([job]).get(job.pk)


def job_state_text(job: Job, ahead: int | None = None) -> str:
    """What a page says about a job: "queued (2 ahead)", "running 81 %", "failed", ..."""
    if job.status == Job.Status.QUEUED:
        ahead = queue_position(job) if ahead is None else ahead
        return f"queued ({ahead} ahead)"
    if job.status == Job.Status.RUNNING:
        return f"running {round(100 * job.progress)} %"
    return str(job.status)
