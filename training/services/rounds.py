"""Rounds of the on-policy loop: start, labeling → reward model → update, failure and cancel (docs/rounds.md).

Every transition of a round is a job (`training.sample_round`, `train_reward_model`,
`training.update_policy`); the job_finished receiver moves the round on.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Comparison, Project
from rewards.job_kinds import TRAIN_REWARD_MODEL
from training.errors import InvalidRoundParams, LoopNotReady, RoundStateError
from training.job_kinds import SAMPLE_ROUND, UPDATE_POLICY
from training.models import Loop, Policy, Round
from training.params import METHODS, RoundParams
from training.policies import BUILD_POLICY, creator
from training.selectors import current_reward_model, human_win_rate, loop_for, round_progress
from training.services.transitions import enqueue_round_job, history_event, tail, transition
from training.services.updates import GUARDED_METHODS, check_update_overrides

logger = logging.getLogger(__name__)

RM_METRIC_KEYS = ("accuracy", "accuracy_ci", "pairs", "loss", "ece", "train_pairs", "steps")


def next_round_number(project: Project) -> int:
    used = max(
        Comparison.objects.filter(project=project).aggregate(r=Max("round"))["r"] or 0,
        Round.objects.filter(project=project).aggregate(r=Max("number"))["r"] or 0,
    )
    return used + 1


def start_round(*, project: Project, method: str, params: dict | None = None, user=None, enqueue: bool = True):
    """Create round n (sampling) from the loop's current policy and queue its sampling job.

    Returns (round, job or None). One active round per project (a database constraint holds it).
    """
    if method not in METHODS:
        raise InvalidRoundParams(f"method must be one of {list(METHODS)}, got {method!r}")
    loop = loop_for(project)
    merged = RoundParams.from_dict({**loop.defaults, **(params or {})})
    check_update_overrides(method, merged.update)
    from rewards.errors import InvalidTrainingOptions
    from rewards.services import validate_options

    try:
        validate_options(project=project, options=merged.reward_model)
    except InvalidTrainingOptions as exc:
        error = InvalidRoundParams(f"reward_model: {exc}")
        if getattr(exc, "field", None):
            error.field = f"reward_model.{exc.field}"
        raise error from None
    if loop.current.status != Policy.Status.READY:
        raise LoopNotReady(f"the current policy v{loop.current.version} is {loop.current.status}")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = Round.objects.filter(project=project, state__in=Round.ACTIVE).first()
        if active is not None:
            raise RoundStateError(f"round {active.number} is still {active.state}; finish or cancel it first")
        loop = Loop.objects.select_related("current").get(pk=loop.pk)
        round_ = Round.objects.create(
            project=project,
            number=next_round_number(project),
            method=method,
            policy=loop.current,
            params=merged.as_dict(),
            created_by=creator(user),
            history=[history_event(Round.State.SAMPLING)],
        )
        job = enqueue_round_job(round_, SAMPLE_ROUND, user) if enqueue else None
    return round_, job


def advance_round(*, round_: Round, user=None, force: bool = False):
    """labeling → reward_model: queue the reward model's retraining on every vote so far.

    Without `force` the round's comparisons must all be complete; with it, at least `min_votes`
    human votes. Returns the training job.
    """
    from rewards.models import RetrainTrigger
    from rewards.services import request_training

    params = RoundParams.from_dict(round_.params)
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if locked.state != Round.State.LABELING:
            raise RoundStateError(f"round {locked.number} is {locked.state}, not labeling")
        progress = round_progress(locked)
        if not force and (progress["comparisons"] == 0 or progress["complete"] < progress["comparisons"]):
            raise RoundStateError(
                f"round {locked.number} has {progress['complete']} of {progress['comparisons']} comparisons complete; "
                "advance with force to go on early"
            )
        if progress["votes"] < max(1, params.min_votes):
            raise RoundStateError(
                f"round {locked.number} has {progress['votes']} human votes; at least "
                f"{max(1, params.min_votes)} are needed"
            )
        # The rewards app's auto-retrain would train a second version for this round: claim it.
        trigger, _ = RetrainTrigger.objects.get_or_create(project_id=locked.project_id, round=locked.number)
        options, step = reward_step_options(locked, params)
        reward_model, job = request_training(
            project=locked.project, user=user, options=options, trigger=f"round:{locked.number}"
        )
        trigger.reward_model = reward_model
        trigger.save(update_fields=["reward_model"])
        human = human_win_rate(locked)
        metrics = {
            "labeling": progress,
            "reward_model_step": step,
            **({"human_win_rate_vs_parent": human} if human else {}),
        }
        transition(
            locked,
            Round.State.LABELING,
            Round.State.REWARD_MODEL,
            metrics=metrics,
            job_id=job.pk,
            reward_model=reward_model,
        )
        if human and locked.policy.round_id:
            # The policy sampled here came out of an earlier round: that round gets its human verdict.
            earlier = Round.objects.select_for_update().filter(pk=locked.policy.round_id).first()
            if earlier is not None:
                earlier.metrics = {**earlier.metrics, "human_win_rate": human}
                earlier.save(update_fields=["metrics", "updated_at"])
    round_.refresh_from_db()
    return job


def reward_step_options(round_: Round, params: RoundParams) -> tuple[dict, dict]:
    """The reward model's training options for this round, and a record of how it was chosen.

    bounded (the default, once the project has a current reward model): warm start from it and
    train on this round's pairs (at most reward_max_new_pairs) plus reward_replay_pairs older ones;
    full, or no reward model yet: every vote so far, from the base model. Explicit
    `reward_model` options of the round win over both.
    """
    options = dict(params.reward_model)
    current = current_reward_model(round_.project)
    if params.reward_retrain == "full" or current is None:
        mode = "full" if params.reward_retrain == "full" else "full (no reward model yet)"
        return options, {"mode": mode}
    options.setdefault("rounds", [round_.number])
    options.setdefault("replay_pairs", params.reward_replay_pairs)
    options.setdefault("max_new_pairs", params.reward_max_new_pairs)
    options.setdefault("warm_start", True)
    return options, {
        "mode": "bounded",
        "warm_start_from": current.version,
        "rounds": options["rounds"],
        "replay_pairs": options["replay_pairs"],
        "max_new_pairs": options["max_new_pairs"],
    }


def maybe_advance(*, project_id: int, round_number: int) -> bool:
    """After a vote: a labeling round with auto_advance whose comparisons are all complete moves on."""
    round_ = (
        Round.objects.select_related("project", "policy")
        .filter(project_id=project_id, number=round_number, state=Round.State.LABELING)
        .first()
    )
    if round_ is None or not RoundParams.from_dict(round_.params).auto_advance:
        return False
    open_left = Comparison.objects.filter(
        project_id=project_id, round=round_number, gold_label="", is_open=True, is_complete=False
    ).exists()
    if open_left:
        return False
    try:
        advance_round(round_=round_)
    except RoundStateError:
        return False  # someone else advanced it first
    return True


def reward_model_finished(*, job) -> None:
    """job_finished of a reward-model job: the round that waits for it goes on, waits at the guard, or fails."""
    round_ = Round.objects.filter(state=Round.State.REWARD_MODEL, job_id=job.pk).first()
    if round_ is None:
        return
    if job.status != "succeeded":
        fail_round(
            round_=round_,
            reason=f"reward-model training {job.status}: {tail(job.error)}",
            cancelled=job.status == "cancelled",
        )
        return
    from rewards.services import mark_current

    reward_model = round_.reward_model
    assert reward_model is not None  # the retrain job belongs to this round's reward model
    reward_model.refresh_from_db()
    params = RoundParams.from_dict(round_.params)
    guard = reward_model_guard(reward_model.metrics, min_pairs=params.min_held_out_pairs)
    blocked = not guard["passed"] and round_.method in GUARDED_METHODS
    if not guard["passed"] and not blocked:
        guard["warning"] = f"DPO goes on (it trains on the votes, not on the reward model): {guard['reason']}"
    with transaction.atomic():
        mark_current(reward_model=reward_model)
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if locked.state != Round.State.REWARD_MODEL:
            return
        rm_metrics = {
            "reward_model": {
                "version": reward_model.version,
                "guard": guard,
                **{k: reward_model.metrics.get(k) for k in RM_METRIC_KEYS},
            }
        }
        rm_metrics["reward_model"]["accuracy_ci"] = rm_metrics["reward_model"]["accuracy_ci"] or guard["accuracy_ci"]
        if blocked:
            transition(
                locked,
                Round.State.REWARD_MODEL,
                Round.State.GUARDED,
                metrics=rm_metrics,
                job_id=None,
                reason=f"waiting at the guard: {guard['reason']}",
                event={"reason": guard["reason"]},
            )
            return
        job = enqueue_round_job(locked, UPDATE_POLICY, locked.created_by)
        transition(
            locked,
            Round.State.REWARD_MODEL,
            Round.State.POLICY_UPDATE,
            metrics=rm_metrics,
            job_id=job.pk,
            event={"warning": guard["warning"]} if guard.get("warning") else None,
        )


def reward_model_guard(metrics: dict, *, min_pairs: int) -> dict:
    """Is the reward model good enough to optimise against? Its held-out accuracy's 95 % Wilson
    interval must lie above ½ (chance) and its held-out set must have at least `min_pairs` pairs."""
    from rewards.ml.metrics import wilson_interval  # pure Python: no torch

    pairs = int(metrics.get("pairs") or 0)
    accuracy = metrics.get("accuracy")
    if accuracy is None or not pairs:
        low, high, accuracy = 0.0, 1.0, None
    else:
        low, high = metrics.get("accuracy_ci") or wilson_interval(accuracy * pairs, pairs)
    reasons = []
    if pairs < min_pairs:
        reasons.append(f"{pairs} held-out pairs, fewer than the minimum of {min_pairs} (min_held_out_pairs)")
    if accuracy is None:
        reasons.append("no held-out accuracy")
    elif low <= 0.5:
        where = "includes" if high >= 0.5 else "lies below"
        reasons.append(
            f"held-out accuracy {accuracy:.3f} with 95 % interval [{low:.3f}, {high:.3f}] {where} 0.5 (chance)"
        )
    return {
        "passed": not reasons,
        "reason": "; ".join(reasons),
        "accuracy": accuracy,
        "accuracy_ci": [low, high],
        "pairs": pairs,
        "min_pairs": min_pairs,
        "method": "wilson-95 lower bound > 0.5",
    }


def override_guard(*, round_: Round, user=None, who: str = ""):
    """guarded → policy_update on a researcher's explicit say-so; recorded in the history and metrics."""
    who = who or getattr(user, "username", "") or "a researcher"
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if locked.state != Round.State.GUARDED:
            raise RoundStateError(f"round {locked.number} is {locked.state}, not waiting at the guard")
        record = {"by": who, "at": timezone.now().isoformat(), "reason": locked.reason}
        transition(
            locked,
            Round.State.GUARDED,
            Round.State.POLICY_UPDATE,
            metrics={"guard_override": record},
            reason=f"guard overridden by {who}: {locked.reason}",
            event={"override_guard": True, "by": who},
        )
        job = enqueue_round_job(
            locked, UPDATE_POLICY, user if getattr(user, "is_authenticated", False) else locked.created_by
        )
    round_.refresh_from_db()
    return job


def cancel_round(*, round_: Round, user=None) -> Round:
    """Stop an active round: its running job is asked to stop, the round is cancelled with a reason."""
    from prefloop.jobs.models import Job
    from prefloop.jobs.services import cancel_job

    who = getattr(user, "username", "") or "a researcher"
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if not locked.is_active:
            raise RoundStateError(f"round {locked.number} is already {locked.state}")
        transition(locked, locked.state, Round.State.CANCELLED, reason=f"cancelled by {who} during {locked.state}")
        job = Job.objects.filter(pk=locked.job_id).first() if locked.job_id else None
    if job is not None:
        cancel_job(job)
    # Comparisons not yet voted on are withdrawn from annotators' queues.
    Comparison.objects.filter(project_id=locked.project_id, round=locked.number, votes_done=0, imported_votes=0).update(
        is_open=False
    )
    round_.refresh_from_db()
    return round_


def fail_round(*, round_: Round, reason: str, cancelled: bool = False) -> None:
    with transaction.atomic():
        locked = Round.objects.select_for_update().filter(pk=round_.pk).first()
        if locked is None or not locked.is_active:
            return
        transition(locked, locked.state, Round.State.CANCELLED if cancelled else Round.State.FAILED, reason=reason)


def job_finished(*, job) -> None:
    """job_finished receiver body: moves rounds on and marks failed policies."""
    if job.kind == TRAIN_REWARD_MODEL:
        reward_model_finished(job=job)
    elif job.kind in (SAMPLE_ROUND, UPDATE_POLICY) and job.status != "succeeded":
        round_ = Round.objects.filter(job_id=job.pk, state__in=Round.ACTIVE).first()
        if round_ is not None:
            step = "sampling" if job.kind == SAMPLE_ROUND else "policy update"
            fail_round(
                round_=round_, reason=f"{step} {job.status}: {tail(job.error)}", cancelled=job.status == "cancelled"
            )
    if job.kind in (BUILD_POLICY, UPDATE_POLICY) and job.status != "succeeded":
        Policy.objects.filter(job_id=job.pk, status__in=[Policy.Status.QUEUED, Policy.Status.TRAINING]).update(
            status=Policy.Status.FAILED,
            error=f"job {job.pk} {job.status}: {tail(job.error)}",
            finished_at=timezone.now(),
        )
