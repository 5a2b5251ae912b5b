"""Reads of the training app: object-level access (researchers of the project only) and lists."""

from __future__ import annotations

import random

from annotate.models import Comparison, ComparisonItem, Membership, Project, Prompt, Vote
from annotate.selectors import projects_for_user
from prefloop.core.errors import NotFound
from training.errors import LoopNotReady
from training.models import Loop, Policy, Round
from training.params import RoundParams


def loop_for(project: Project) -> Loop:
    """The project's loop (reference and current policy loaded); LoopNotReady when it has none."""
    loop = Loop.objects.select_related("reference", "current").filter(project=project).first()
    if loop is None:
        raise LoopNotReady("this project has no policy yet: build the demo policy or register a model folder")
    return loop


def rounds(project: Project):
    return (
        Round.objects.filter(project=project).select_related("policy", "new_policy", "reward_model").order_by("-number")
    )


def policies(project: Project):
    return Policy.objects.filter(project=project).select_related("parent").order_by("-version")


def loop_of(project: Project) -> Loop | None:
    return Loop.objects.select_related("reference", "current").filter(project=project).first()


def researcher_round(user, round_id: int) -> Round:
    """The round if `user` is a researcher of its project; NotFound otherwise (never 403)."""
    round_ = (
        Round.objects.select_related("project", "policy", "new_policy", "reward_model")
        .filter(pk=round_id, project__in=projects_for_user(user, role=Membership.Role.RESEARCHER))
        .first()
    )
    if round_ is None:
        raise NotFound("No such round.")
    return round_


def researcher_policy(user, policy_id: int) -> Policy:
    policy = Policy.objects.filter(
        pk=policy_id, project__in=projects_for_user(user, role=Membership.Role.RESEARCHER)
    ).first()
    if policy is None:
        raise NotFound("No such policy.")
    return policy


# --- a round's reads (used by training/services/) ---------------------------------------------


def round_prompts(round_: Round, params: RoundParams) -> list[Prompt]:
    """This round's prompts: a seeded draw from the project's prompts, evaluation prompts excluded."""
    loop = loop_for(round_.project)
    held_out = set(loop.eval_prompt_ids)
    candidates = [p for p in Prompt.objects.filter(project=round_.project).order_by("id") if p.pk not in held_out]
    rng = random.Random(f"round:{round_.project_id}:{round_.number}:{params.seed}")
    if len(candidates) > params.prompts:
        candidates = sorted(rng.sample(candidates, params.prompts), key=lambda p: p.pk)
    return candidates


def eval_prompts(project: Project) -> list[Prompt]:
    loop = loop_for(project)
    return list(Prompt.objects.filter(project=project, pk__in=loop.eval_prompt_ids).order_by("id"))


def round_progress(round_: Round) -> dict:
    """Human votes on the round's comparisons against what its overlap target asks."""
    comparisons = Comparison.objects.filter(project_id=round_.project_id, round=round_.number, gold_label="")
    total = comparisons.count()
    complete = comparisons.filter(is_complete=True).count()
    votes = Vote.objects.filter(assignment__comparison__in=comparisons, source=Vote.Source.HUMAN).count()
    target = total * round_.project.overlap_target
    return {
        "comparisons": total,
        "complete": complete,
        "votes": votes,
        "target_votes": target,
        "fraction": (votes / target) if target else 0.0,
    }


def human_win_rate(round_: Round) -> dict | None:
    """Human votes on cross pairs (this round's policy vs its parent): wins + ties/2 over votes."""
    policy = round_.policy
    if not policy.parent_id:
        return None
    mine, parent = policy.pk, policy.parent_id
    cross: dict[int, dict[int, int]] = {}
    for comparison_id, completion_id, checkpoint in ComparisonItem.objects.filter(
        comparison__project_id=round_.project_id, comparison__round=round_.number
    ).values_list("comparison_id", "completion_id", "completion__policy_checkpoint_id"):
        if checkpoint is not None:  # a cross pair's completions all come from a checkpoint
            cross.setdefault(comparison_id, {})[checkpoint] = completion_id
    cross = {c: m for c, m in cross.items() if set(m) == {mine, parent}}
    if not cross:
        return None
    wins = ties = total = 0
    for comparison_id, winner_id, choice in Vote.objects.filter(
        assignment__comparison_id__in=list(cross), source=Vote.Source.HUMAN
    ).values_list("assignment__comparison_id", "winner_id", "choice"):
        total += 1
        if choice in (Vote.Choice.TIE, Vote.Choice.BOTH_BAD):
            ties += 1
        elif winner_id == cross[comparison_id][mine]:
            wins += 1
    if not total:
        return None
    assert policy.parent is not None  # parent_id checked above
    return {
        "policy_version": policy.version,
        "parent_version": policy.parent.version,
        "votes": total,
        "wins": wins,
        "ties": ties,
        "win_rate": (wins + ties / 2) / total,
    }


def current_reward_model(project: Project):
    from rewards.models import RewardModel

    return RewardModel.objects.filter(project=project, is_current=True, status=RewardModel.Status.READY).first()
