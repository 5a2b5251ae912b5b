"""REST API of the rewards app (researchers of the project only; everyone else gets 404)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Membership
from annotate.selectors import project_for_user
from rewards import selectors, services
from rewards import serializers as s

RESEARCHER = Membership.Role.RESEARCHER


class RewardModelListApi(APIView):
    @extend_schema(responses=s.RewardModelSerializer(many=True))
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(s.RewardModelSerializer(selectors.reward_models(project), many=True).data)

    @extend_schema(request=s.TrainRequestSerializer, responses={202: dict})
    def post(self, request, project_id: int):
        """Queue a training run: the new version (status queued) and its job id."""
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.TrainRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward_model, job = services.request_training(
            project=project, user=request.user, options=data.validated_data["options"]
        )
        return Response(
            {"job_id": job.pk, "reward_model": s.RewardModelSerializer(reward_model).data},
            status=status.HTTP_202_ACCEPTED,
        )


class RewardModelImportApi(APIView):
    @extend_schema(request=s.ImportRequestSerializer, responses={202: dict})
    def post(self, request, project_id: int):
        """Register an existing reward-model folder as the next version; a job scores it on the held-out votes."""
        from rewards.imports import register_reward_model

        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.ImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reward_model, job = register_reward_model(project=project, user=request.user, **data.validated_data)
        return Response(
            {"job_id": job.pk, "reward_model": s.RewardModelSerializer(reward_model).data},
            status=status.HTTP_202_ACCEPTED,
        )


class RewardModelDetailApi(APIView):
    @extend_schema(responses=s.RewardModelDetailSerializer)
    def get(self, request, reward_model_id: int):
        reward_model = selectors.reward_model_for_user(request.user, reward_model_id)
        return Response(s.RewardModelDetailSerializer(reward_model).data)


class RewardModelMakeCurrentApi(APIView):
    @extend_schema(request=None, responses=s.RewardModelSerializer)
    def post(self, request, reward_model_id: int):
        reward_model = selectors.reward_model_for_user(request.user, reward_model_id)
        return Response(s.RewardModelSerializer(services.mark_current(reward_model=reward_model)).data)


class RewardModelScoreApi(APIView):
    @extend_schema(request=s.ScoreRequestSerializer, responses=dict)
    def post(self, request, reward_model_id: int):
        """r(x, y) for up to 256 completions of the project, or (prompt, response) items: one float each."""
        reward_model = selectors.reward_model_for_user(request.user, reward_model_id)
        data = s.ScoreRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "completion_ids" in data.validated_data:
            scores = services.score_completions(
                reward_model=reward_model, completion_ids=data.validated_data["completion_ids"]
            )
        else:
            items = [(i["prompt"], i["response"]) for i in data.validated_data["items"]]
            scores = services.score_items(reward_model=reward_model, items=items)
        return Response({"reward_model_id": reward_model.pk, "version": reward_model.version, "scores": scores})


class RewardSettingsApi(APIView):
    @extend_schema(responses=s.RewardSettingsSerializer)
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(s.RewardSettingsSerializer(services.reward_settings(project)).data)

    @extend_schema(request=s.RewardSettingsSerializer, responses=s.RewardSettingsSerializer)
    def patch(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.RewardSettingsSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        found = services.update_reward_settings(project=project, **data.validated_data)
        return Response(s.RewardSettingsSerializer(found).data)
