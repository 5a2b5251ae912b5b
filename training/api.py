"""REST API of the training app (researchers of the project only; everyone else gets 404)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Membership
from annotate.selectors import project_for_user
from training import policies, selectors, services
from training import serializers as s
from training.errors import InvalidModelPath

RESEARCHER = Membership.Role.RESEARCHER


class PolicyListApi(APIView):
    @extend_schema(responses=s.PolicySerializer(many=True))
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(s.PolicySerializer(selectors.policies(project), many=True).data)

    @extend_schema(request=s.PolicyRequestSerializer, responses={201: s.PolicySerializer, 202: dict})
    def post(self, request, project_id: int):
        """Build the demo policy (202, a job) or register a model folder as a ready policy (201)."""
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.PolicyRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["kind"] == "base":
            if not v["model_path"]:
                raise InvalidModelPath("model_path is required for kind=base")
            policy = policies.register_base_policy(
                project=project, model_path=v["model_path"], name=v["name"], user=request.user
            )
            return Response(s.PolicySerializer(policy).data, status=status.HTTP_201_CREATED)
        policy, job = policies.request_demo_policy(project=project, user=request.user, config=v["config"])
        return Response({"job_id": job.pk, "policy": s.PolicySerializer(policy).data}, status=status.HTTP_202_ACCEPTED)


class PolicyDetailApi(APIView):
    @extend_schema(responses=s.PolicyDetailSerializer)
    def get(self, request, policy_id: int):
        return Response(s.PolicyDetailSerializer(selectors.researcher_policy(request.user, policy_id)).data)


class LoopApi(APIView):
    @extend_schema(responses=s.LoopSerializer)
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(s.LoopSerializer(selectors.loop_for(project)).data)


class RoundListApi(APIView):
    @extend_schema(responses=s.RoundSerializer(many=True))
    def get(self, request, project_id: int):
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        return Response(s.RoundSerializer(selectors.rounds(project), many=True).data)

    @extend_schema(request=s.RoundRequestSerializer, responses={202: dict})
    def post(self, request, project_id: int):
        """Start the next round from the current policy: the round (sampling) and its job id."""
        project = project_for_user(request.user, project_id, role=RESEARCHER)
        data = s.RoundRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        round_, job = services.start_round(
            project=project,
            method=data.validated_data["method"],
            params=data.validated_data["params"],
            user=request.user,
        )
        return Response({"job_id": job.pk, "round": s.RoundSerializer(round_).data}, status=status.HTTP_202_ACCEPTED)


class RoundDetailApi(APIView):
    @extend_schema(responses=dict)
    def get(self, request, round_id: int):
        """The round with its labeling progress."""
        round_ = selectors.researcher_round(request.user, round_id)
        return Response({**s.RoundSerializer(round_).data, "progress": services.round_progress(round_)})


class RoundAdvanceApi(APIView):
    @extend_schema(request=s.AdvanceRequestSerializer, responses={202: dict})
    def post(self, request, round_id: int):
        """labeling → reward_model: retrain the reward model now (force: before every comparison is complete)."""
        round_ = selectors.researcher_round(request.user, round_id)
        data = s.AdvanceRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = services.advance_round(round_=round_, user=request.user, force=data.validated_data["force"])
        return Response({"job_id": job.pk, "round": s.RoundSerializer(round_).data}, status=status.HTTP_202_ACCEPTED)


class RoundOverrideGuardApi(APIView):
    @extend_schema(request=None, responses={202: dict})
    def post(self, request, round_id: int):
        """guarded → policy_update: run the PPO / best-of-N update on this reward model anyway (recorded)."""
        round_ = selectors.researcher_round(request.user, round_id)
        job = services.override_guard(round_=round_, user=request.user)
        return Response({"job_id": job.pk, "round": s.RoundSerializer(round_).data}, status=status.HTTP_202_ACCEPTED)


class RoundCancelApi(APIView):
    @extend_schema(request=None, responses=s.RoundSerializer)
    def post(self, request, round_id: int):
        round_ = selectors.researcher_round(request.user, round_id)
        return Response(s.RoundSerializer(services.cancel_round(round_=round_, user=request.user)).data)
