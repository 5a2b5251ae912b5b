"""REST API of the annotate app: parse, authorise, call a service, serialise. Nothing else."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.shortcuts import get_object_or_404
from drf_spectacular.authentication import TokenScheme
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors
from annotate import serializers as s
from annotate.export.download import export_download
from annotate.models import Comparison, Membership, User
from annotate.quality.report import project_quality
from annotate.services.assignment import next_comparison
from annotate.services.importing import import_file
from annotate.services.prepared import prepared_cursor
from annotate.services.projects import comparison_set_gold, membership_set, project_create
from annotate.services.voting import VoteInput, record_vote
from annotate.vote_next import is_int, next_after_vote, parse_exclude, wants_next
from prefloop.core.errors import InvalidUpload, InvalidUsername, InvalidVote
from prefloop.core.pagination import Pagination as LimitOffsetPagination  # bounded limit and offset
from prefloop.core.pagination import paginated

RESEARCHER = Membership.Role.RESEARCHER
ANNOTATOR = Membership.Role.ANNOTATOR


class CanCreateProjects(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.method != "POST" or request.user.role in (User.Role.RESEARCHER, User.Role.ADMIN)


class ProjectListApi(APIView):
    permission_classes = [*APIView.permission_classes, CanCreateProjects]

    @extend_schema(responses=s.PROJECTS_FOR_MEMBER)
    def get(self, request):
        """Your projects, each as GET /api/projects/{id}/ shows it to you (annotators: rules and progress)."""
        projects = list(selectors.projects_for_user(request.user))
        if request.user.is_admin:
            return Response(s.ProjectSerializer(projects, many=True).data)
        roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
        annotating = [p for p in projects if roles.get(p.pk) != RESEARCHER]
        progress = selectors.annotator_progress_by_project(request.user, annotating)
        return Response(
            [
                _annotator_project(p, progress[p.pk]) if p.pk in progress else s.ProjectSerializer(p).data
                for p in projects
            ]
        )

    @extend_schema(request=s.ProjectSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        data = s.ProjectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(created_by=request.user, **data.validated_data)
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=s.PROJECT_FOR_MEMBER)
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id)
        if request.user.is_admin or project.memberships.filter(user=request.user, role=RESEARCHER).exists():
            return Response(s.ProjectSerializer(project).data)
        return Response(_annotator_project(project, selectors.annotator_progress(request.user, project)))


def _annotator_project(project, progress: selectors.AnnotatorProgress) -> dict:
    """What an annotator sees of a project: its rules and their own progress, no settings."""
    return {**s.AnnotatorProjectSerializer(project).data, "progress": progress.as_dict()}


class ProjectProgressApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(selectors.project_progress(project).as_dict())


class ProjectComparisonsApi(APIView):
    @extend_schema(responses=paginated(s.ComparisonProgressSerializer(), "PaginatedComparisonProgressList"))
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.comparison_progress(project), request, view=self) or []
        completions = selectors.comparison_completions([c.pk for c in page])
        return paginator.get_paginated_response(
            s.ComparisonProgressSerializer(page, many=True, context={"completions": completions}).data
        )


class ProjectVotesApi(APIView):
    @extend_schema(responses=paginated(s.ResearcherVoteSerializer(), "PaginatedResearcherVoteList"))
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.project_votes(project), request, view=self)
        return paginator.get_paginated_response(s.ResearcherVoteSerializer(page, many=True).data)


class ProjectMembersApi(APIView):
    @extend_schema(request=s.MembershipInputSerializer, responses={201: dict})
    def post(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.MembershipInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(username=data.validated_data["username"], is_active=True).first()
        if user is None:
            raise InvalidUsername("username", "no active user with this name")
        membership = membership_set(
            project=project, user=user, **{k: data.validated_data[k] for k in ("role", "cap", "paused")}
        )
        return Response(
            {"username": user.username, "role": membership.role, "cap": membership.cap, "paused": membership.paused},
            status=201,
        )


class ComparisonGoldApi(APIView):
    """Mark a comparison as a gold check with a known answer (researchers of its project)."""

    @extend_schema(request=s.GoldInputSerializer, responses=dict)
    def post(self, request, comparison_id: int):
        comparison = get_object_or_404(Comparison, pk=comparison_id)
        selectors.project_for_user(request.user, comparison.project_id, role=RESEARCHER)
        data = s.GoldInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comparison = comparison_set_gold(comparison=comparison, **data.validated_data)
        return Response(
            {"id": comparison.pk, "gold_label": comparison.gold_label, "gold_winner_id": comparison.gold_winner_id}
        )


class ProjectQualityApi(APIView):
    """Agreement per aspect (Krippendorff's alpha, percent agreement) and per-annotator diagnostics."""

    @extend_schema(responses=dict)
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(project_quality(project).as_dict())


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class ProjectImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    own_body_limit = True  # PREFLOOP_MAX_UPLOAD_BYTES below, not PREFLOOP_MAX_REQUEST_BYTES

    @extend_schema(request=s.ImportInputSerializer, responses={201: dict})
    def post(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        # Refused from the header, before the body is read and spooled to disk.
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > settings.PREFLOOP_MAX_UPLOAD_BYTES + 64 * 1024:
            raise InvalidUpload("file", f"larger than {settings.PREFLOOP_MAX_UPLOAD_BYTES} bytes")
        data = s.ImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        if upload.size > settings.PREFLOOP_MAX_UPLOAD_BYTES:
            raise InvalidUpload("file", f"larger than {settings.PREFLOOP_MAX_UPLOAD_BYTES} bytes")
        # The client's name only shapes error messages and format detection; never a path.
        name = SAFE_NAME.sub("_", Path(upload.name or "upload").name).lstrip(".")[:100] or "upload"
        with tempfile.TemporaryDirectory(prefix="prefloop-import-") as folder:
            path = Path(folder) / name
            with open(path, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            report = import_file(
                project=project,
                path=path,
                format=data.validated_data["format"] or None,
                pairing=data.validated_data["pairing"],
                pairing_options={"pairs_per_prompt": data.validated_data["pairs_per_prompt"]},
                round=data.validated_data["round"],
                priority=data.validated_data["priority"],
            )
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)


class ProjectExportApi(APIView):
    """Download a project's preference pairs (or raw votes) as JSONL, Parquet, CSV or a zipped hf
    `datasets` folder; `part=ties` / `part=manifest` give the same snapshot's tie rows and manifest.
    Same service as `export_dataset`; query parameters mirror the command's options. The answer is
    a file to save, never a page (prefloop/downloads.py)."""

    @extend_schema(
        parameters=[s.ExportQuerySerializer],
        responses={
            **{
                (200, media): bytes
                for media in ("application/x-ndjson", "application/vnd.apache.parquet", "text/csv", "application/zip")
            },
            (200, "application/json"): OpenApiTypes.OBJECT,
        },
    )  # part=manifest
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id, role=RESEARCHER)
        query = s.ExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        export = export_download(project=project, query=query.validated_data)
        return export.response(request)


class HotPathTokenAuthentication(TokenAuthentication):
    """DRF's token check in one prepared statement on PostgreSQL (same header rules and errors)."""

    _SQL = (
        "SELECT "
        + ", ".join(f'u."{f.column}"' for f in User._meta.concrete_fields)
        + (" FROM authtoken_token t JOIN annotate_user u ON u.id = t.user_id WHERE t.key = %s")
    )

    def authenticate_credentials(self, key):
        if connection.vendor != "postgresql":
            return super().authenticate_credentials(key)
        with prepared_cursor() as cursor:
            cursor.execute(self._SQL, [key])
            row = cursor.fetchone()
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        user = User.from_db(connection.alias, [f.attname for f in User._meta.concrete_fields], row)
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return user, key


class HotPathTokenScheme(TokenScheme):
    """The same `Authorization: Token <key>` scheme in the OpenAPI schema, under its own name:
    drf-spectacular wants one class per security-scheme name (else check --deploy warns)."""

    target_class = HotPathTokenAuthentication  # type: ignore[assignment]  # the stubs say str; a class works too
    name = "hotPathTokenAuth"
    match_subclasses = False
    priority = 1


HOT_PATH_AUTHENTICATION = [HotPathTokenAuthentication, SessionAuthentication]


class NextAssignmentApi(APIView):
    """Lease the next comparison (or return your open lease). Sides are randomised per lease."""

    authentication_classes = HOT_PATH_AUTHENTICATION

    # The hot path: the body is parsed by hand and the membership check happens inside the
    # engine's first statement (NotFound when not an annotator here); see annotate/services/assignment.md.
    @extend_schema(request=s.NextInputSerializer, responses=dict)
    def post(self, request, project_id: int):
        result = next_comparison(
            annotator=request.user, project=project_id, exclude_assignments=parse_exclude(request.data)
        )
        if result.assignment is None:
            return Response({"assignment": None, "reason": result.reason})
        payload = selectors.assignment_payload(result.assignment, texts=result.texts)
        return Response({"assignment": payload, "reason": result.reason})


class AssignmentVoteApi(APIView):
    """Submit the vote for an assignment. Send the same idempotency key when retrying."""

    authentication_classes = HOT_PATH_AUTHENTICATION

    @extend_schema(
        request=s.VoteWithNextInputSerializer,
        responses={201: dict, 200: dict},
        parameters=[
            OpenApiParameter(
                "next",
                str,
                enum=["1", "html"],
                description="the answer carries the next assignment (docs/vote-loop.md)",
            )
        ],
    )
    def post(self, request, assignment_id: int):
        answer, replayed = cast_vote(request.user, assignment_id, request.query_params, request.data, request.headers)
        return Response(answer, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


def cast_vote(user, assignment_id: int, query, data: object, headers) -> tuple[dict, bool]:
    """A vote request's checks, the vote and (with ?next=) the next assignment: (answer, replayed).

    The one body of the vote endpoint, shared by the DRF view and the fast path (annotate/fast_api.py)."""
    body = data if isinstance(data, dict) else {}
    with_next = wants_next(query, body)  # ?next=1: the answer carries the next assignment
    exclude = parse_exclude(body) if with_next else set()
    key = headers.get("Idempotency-Key") or body.get("idempotency_key") or ""
    if not isinstance(key, str):
        raise InvalidVote("idempotency_key", "must be a string")
    time_spent_ms = body.get("time_spent_ms")
    if time_spent_ms is not None and not (is_int(time_spent_ms) and 0 <= int(time_spent_ms) <= 86_400_000):
        raise InvalidVote("time_spent_ms", "an integer number of milliseconds between 0 and 86400000")
    if body.get("votes"):
        if not isinstance(body["votes"], list) or len(body["votes"]) > 20:
            raise InvalidVote("votes", "a list with one vote per aspect")
        votes = [_vote_input(vote, f"votes[{i}]", aspect_required=True) for i, vote in enumerate(body["votes"])]
    else:
        votes = [_vote_input(body, "", aspect_required=False)]  # the project's only aspect
    result = record_vote(
        annotator=user,
        assignment_id=assignment_id,
        votes=votes,
        idempotency_key=key,
        time_spent_ms=None if time_spent_ms is None else int(time_spent_ms),
    )
    answer = {
        "assignment_id": result.assignment.pk,
        "replayed": result.replayed,
        "votes": [_vote_output(vote) for vote in result.votes],
    }
    if with_next:
        answer.update(
            next_after_vote(annotator=user, project_id=result.assignment.project_id, exclude=exclude, mode=with_next)
        )
    return answer, result.replayed


def _vote_input(data, prefix: str, *, aspect_required: bool) -> VoteInput:
    """One aspect's vote from JSON, type-checked here (the rules live in the voting service)."""

    def field(name):
        return f"{prefix}.{name}" if prefix else name

    if not isinstance(data, dict):
        raise InvalidVote(prefix or "votes", "must be an object")
    aspect = data.get("aspect")
    if aspect_required and (not isinstance(aspect, str) or not 0 < len(aspect) <= 64):
        raise InvalidVote(field("aspect"), "required, at most 64 characters")
    choice, ranking, strength = data.get("choice"), data.get("ranking"), data.get("strength")
    rationale = data.get("rationale") or ""
    if choice is not None and not isinstance(choice, str):
        raise InvalidVote(field("choice"), "must be a string")
    if ranking is not None and not (
        isinstance(ranking, list) and len(ranking) <= 26 and all(_is_side_or_group(r) for r in ranking)
    ):
        raise InvalidVote(field("ranking"), "a list of sides, best first (a list of sides inside is a tie)")
    if strength is not None and not is_int(strength):
        raise InvalidVote(field("strength"), "must be an integer")
    if not isinstance(rationale, str) or len(rationale) > 20_000:
        raise InvalidVote(field("rationale"), "a string of at most 20000 characters")
    return VoteInput(
        aspect=aspect if aspect_required else None,
        choice=choice,
        ranking=ranking,
        strength=None if strength is None else int(strength),
        rationale=rationale,
    )


def _is_side_or_group(item) -> bool:
    def side(x) -> bool:
        return isinstance(x, str) and len(x) == 1

    return side(item) or isinstance(item, list) and 0 < len(item) <= 26 and all(side(x) for x in item)


_datetime_field = s.VoteOutputSerializer().fields["created_at"]


def _vote_output(vote) -> dict:
    # The shape of VoteOutputSerializer, without building a serializer per vote.
    return {
        "id": vote.pk,
        "aspect": vote.aspect,
        "choice": vote.choice,
        "strength": vote.strength,
        "rationale": vote.rationale,
        "created_at": _datetime_field.to_representation(vote.created_at),
    }


class MyVotesApi(APIView):
    """An annotator's own votes in a project (their work only, no model names)."""

    @extend_schema(responses=paginated(s.VoteOutputSerializer(), "PaginatedVoteOutputList"))
    def get(self, request, project_id: int):
        project = selectors.project_for_user(request.user, project_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.annotator_votes(request.user, project), request, view=self)
        return paginator.get_paginated_response(s.VoteOutputSerializer(page, many=True).data)
