"""Reads of the training app: object-level access (researchers of the project only) and lists."""
from __future__ import annotations

from annotate.models import Membership, Project
from annotate.selectors import projects_for_user
from prefloop.core.errors import NotFound
from training.models import Loop, Policy, Round


def rounds(project: Project):
    return Round.objects.filter(project=project).select_related("policy", "new_policy", "reward_model").order_by("-number")


def policies(project: Project):
    return Policy.objects.filter(project=project).select_related("parent").order_by("-version")


def loop_of(project: Project) -> Loop | None:
    return Loop.objects.select_related("reference", "current").filter(project=project).first()


def researcher_round(user, round_id: int) -> Round:
    """The round if `user` is a researcher of its project; NotFound otherwise (never 403)."""
    round_ = Round.objects.select_related("project", "policy", "new_policy", "reward_model").filter(
        pk=round_id, project__in=projects_for_user(user, role=Membership.Role.RESEARCHER)).first()
    if round_ is None:
        raise NotFound("No such round.")
    return round_


def researcher_policy(user, policy_id: int) -> Policy:
    policy = Policy.objects.filter(pk=policy_id, project__in=projects_for_user(user, role=Membership.Role.RESEARCHER)).first()
    if policy is None:
        raise NotFound("No such policy.")
    return policy
