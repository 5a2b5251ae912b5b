"""REST API for jobs: list, detail, cancel. Reading a job's status also reaps dead workers' jobs."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from prefloop.core.pagination import Pagination as LimitOffsetPagination  # bounded limit and offset
from prefloop.core.pagination import paginated
from prefloop.jobs import selectors
from prefloop.jobs.models import Job
from prefloop.jobs.serializers import JobDetailSerializer, JobSerializer
from prefloop.jobs.services import cancel_job, reap_stale_jobs


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValidationError({name: "must be an integer"}) from None
    if not 1 <= number < 2**63:  # a row id: SQLite overflows past 2**63
        raise ValidationError({name: "must be a positive id below 2**63"})
    return number


class JobListApi(APIView):
    @extend_schema(
        operation_id="jobs_list",
        parameters=[
            OpenApiParameter("project", int, description="Only this project's jobs."),
            OpenApiParameter("status", str, enum=Job.Status.values),
            OpenApiParameter("kind", str),
        ],
        responses=paginated(JobSerializer(), "PaginatedJobList"),
    )
    def get(self, request):
        reap_stale_jobs()
        jobs = selectors.jobs_for_user(request.user, project_id=_int_param(request, "project"))
        for field in ("status", "kind"):
            if request.query_params.get(field):
                jobs = jobs.filter(**{field: request.query_params[field]})
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(jobs, request, view=self)
        context = {"positions": selectors.queue_positions(page)}
        return paginator.get_paginated_response(JobSerializer(page, many=True, context=context).data)


class JobDetailApi(APIView):
    @extend_schema(responses=JobDetailSerializer)
    def get(self, request, job_id: int):
        reap_stale_jobs()
        return Response(JobDetailSerializer(selectors.job_for_user(request.user, job_id)).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobDetailSerializer)
    def post(self, request, job_id: int):
        job = cancel_job(selectors.job_for_user(request.user, job_id))
        return Response(JobDetailSerializer(job).data)
