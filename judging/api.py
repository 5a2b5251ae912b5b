"""REST API of the judging app (researchers of the project only; everyone else gets 404)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Membership
from annotate.selectors import project_for_user
from judging import selectors, services
from judging.serializers import (
    AgreementSerializer,
    JudgeRunResultSerializer,
    JudgeRunSerializer,
    JudgeSettingsSerializer,
)
from prefloop.core.errors import InvalidBody

RESEARCHER = Membership.Role.RESEARCHER
SETTINGS_FIELDS = ("judge", "system_prompt", "user_template", "principles", "max_tokens", "batch_size")


def settings_payload(settings) -> dict:
    return {
        "judge": settings.judge_id,
        "judge_label": settings.judge.label if settings.judge else None,
        "system_prompt": settings.system_prompt,
        "user_template": settings.user_template,
        "principles": settings.principles,
        "max_tokens": settings.max_tokens,
        "batch_size": settings.batch_size,
        "prompt_version": services.template_of(settings).version(),
    }


def _object(data) -> dict:
    if not isinstance(data, dict):
        raise InvalidBody("body", "must be a JSON object")
    return data


class JudgeSettingsApi(APIView):
    @extend_schema(operation_id="judge_settings_get", responses=JudgeSettingsSerializer)
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(settings_payload(services.settings_for(project)))

    @extend_schema(
        operation_id="judge_settings_update",
        request=JudgeSettingsSerializer(partial=True),
        responses=JudgeSettingsSerializer,
    )
    def patch(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = {k: v for k, v in _object(request.data).items() if k in SETTINGS_FIELDS}
        return Response(settings_payload(services.update_judge_settings(project=project, data=data)))


class JudgeRunApi(APIView):
    @extend_schema(operation_id="judge_run", request=JudgeRunSerializer, responses={202: JudgeRunResultSerializer})
    def post(self, request, project_id: int):
        """Judge a scope of comparisons: {"round": n} | {"import": id} | {"created_before": iso} | {"ids": [...]}."""
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        scope = dict(_object(request.data))
        triage = scope.pop("triage", None)  # with a round: reorder its queue by judge / reward-model agreement
        ids = services.scope_ids(project, scope)
        job = services.start_judging(
            project=project, comparison_ids=ids, user=request.user, triage=services.triage_option(triage, scope)
        )
        return Response({"job_id": job.pk, "comparisons": len(ids)}, status=status.HTTP_202_ACCEPTED)


class JudgeAgreementApi(APIView):
    @extend_schema(operation_id="judge_agreement", responses=AgreementSerializer)
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(selectors.judge_agreement(project))
