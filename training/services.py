"""Services of the on-policy loop: rounds and their transitions (see rounds.md; policies and the loop: policies.py).

Every transition of a round is a job (`training.sample_round`, `train_reward_model`,
`training.update_policy`); the job_finished receiver moves the round on. The functions here that
run inside a job (`run_*`) import torch/transformers only when called.
"""
from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotate.models import Comparison, ComparisonItem, Project, Prompt, Vote
from annotate.selectors import conversations_by_id, prompt_conversations
from annotate.services.sampled import SampledCompletion, add_comparisons, add_sampled_completions
from prefloop.limits import OutOfBounds, check_limits, field_error
from rewards.services import json_safe
from training.errors import InvalidRoundParams, LoopNotReady, RoundStateError
from training.models import AIFeedback, Loop, Policy, Round
from training.policies import (
    BUILD_JOB, EVAL_PROMPTS, Log, Progress, ShouldStop, creator, error_text, loop_for, next_version, policy_dir,
    step_progress,
)
from training.params import METHODS, RoundParams

logger = logging.getLogger(__name__)

SAMPLE_JOB = "training.sample_round"
UPDATE_JOB = "training.update_policy"
REWARD_JOB = "train_reward_model"
GUARDED_METHODS = ("ppo", "best_of_n")  # they optimise the reward model; DPO trains on the votes themselves
RM_METRIC_KEYS = ("accuracy", "accuracy_ci", "pairs", "loss", "ece", "train_pairs", "steps")
METRIC_KEYS = (
    "mean_reward", "kl_to_reference", "kl_to_reference_se", "kl_to_reference_k1", "kl_samples", "kl_method",
    "win_rate_vs_previous", "win_rate_vs_reference", "mean_length_tokens", "mean_length_chars",
)


# --- rounds: start ------------------------------------------------------------------------------
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
    _check_update_overrides(method, merged.update)
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
            project=project, number=next_round_number(project), method=method, policy=loop.current,
            params=merged.as_dict(), created_by=creator(user), history=[_event(Round.State.SAMPLING)],
        )
        job = _enqueue(round_, SAMPLE_JOB, user) if enqueue else None
    return round_, job


def _check_update_overrides(method: str, overrides: dict) -> None:
    from dataclasses import fields as dc_fields

    config_class = _config_class(method)
    known = {f.name for f in dc_fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidRoundParams(f"update: unknown {method} option(s) {unknown}; known: {sorted(known)}")
    try:
        config = _update_config(method, overrides, seed=0)
        check_limits(config.as_dict(), scope="update")  # steps, epochs, batch sizes, lengths: PREFLOOP_LIMITS
    except OutOfBounds as exc:
        raise field_error(InvalidRoundParams, exc, prefix="update.") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRoundParams(f"update: {exc}") from None


def _config_class(method: str):
    from training.ml import config as c  # dataclasses only: no torch import

    return {"dpo": c.DPOConfig, "ppo": c.PPOConfig, "best_of_n": c.BestOfNConfig}[method]


def _update_config(method: str, overrides: dict, *, seed: int):
    return _config_class(method).from_dict({"seed": seed, **overrides})


def _enqueue(round_: Round, kind: str, user=None):
    from prefloop.jobs.services import enqueue_job

    job = enqueue_job(kind=kind, params={"round_id": round_.pk}, project=round_.project, user=user)
    history = list(round_.history)
    if history and history[-1].get("job_id") is None:  # the step just entered is this job's
        history[-1] = {**history[-1], "job_id": job.pk}
    Round.objects.filter(pk=round_.pk).update(job_id=job.pk, history=history)
    round_.job_id, round_.history = job.pk, history
    return job


# --- rounds: sampling ----------------------------------------------------------------------------
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


def run_sampling(*, round_id: int, progress: Progress | None = None, log: Log | None = None,
                 should_stop: ShouldStop | None = None) -> Round:
    """Sample K completions per prompt from the round's policy (and the parent's, for the human win
    rate), choose the pairs to label, store them as round-n comparisons, then open labeling."""
    round_ = _round_in(round_id, Round.State.SAMPLING)
    params = RoundParams.from_dict(round_.params)
    prompts = round_prompts(round_, params)
    if not prompts:
        raise InvalidRoundParams("the project has no prompts outside the held-out evaluation set")
    from training.ml.config import SamplerParams
    from training.ml.pairs import select_pairs
    from training.ml.sampling import make_sampler

    policy = round_.policy
    texts = prompt_conversations(round_.project, prompts)  # each policy renders them with its own template
    sampler_params = SamplerParams(**params.sampler(seed_offset=round_.number))
    say = log or (lambda line: None)
    say(f"round {round_.number}: {params.k} samples for each of {len(prompts)} prompts from {policy.label}")
    _progress(progress, 0.05, "sampling")
    samples = make_sampler(policy.artifact_path).generate(texts, n=params.k, params=sampler_params)
    _stop_check(should_stop)
    rows = _sampled_rows(round_, policy, prompts, samples, sampler_params.as_dict())
    parent = policy.parent if policy.parent_id and policy.parent.status == Policy.Status.READY else None
    previous_rows: list[SampledCompletion] = []
    if parent is not None and params.previous_samples:
        _progress(progress, 0.45, f"sampling the parent {parent.label}")
        previous = make_sampler(parent.artifact_path).generate(texts, n=params.previous_samples, params=sampler_params)
        previous_rows = _sampled_rows(round_, parent, prompts, previous, sampler_params.as_dict())
    _stop_check(should_stop)
    _progress(progress, 0.8, "choosing pairs")
    everything = rows + previous_rows
    reward_model = _current_reward_model(round_.project)
    scores: dict[tuple[int, str], float] | None = None  # scored before the transaction: no lock held meanwhile
    if params.pair_strategy == "uncertain" or params.ai_feedback:
        if reward_model is None:
            say("no current reward model: no AI feedback, and pairs are drawn at random instead of by uncertainty")
        else:
            scores = _score(reward_model, everything)
    strategy = params.pair_strategy if (params.pair_strategy != "uncertain" or scores) else "random"
    # The samples, their comparisons and the move to labeling commit together: a round cancelled
    # meanwhile makes the transition fail and leaves nothing behind.
    with transaction.atomic():
        ids = add_sampled_completions(project=round_.project, completions=everything)
        rewards = {ids[key]: value for key, value in scores.items()} if scores else None
        by_prompt = {p.pk: [] for p in prompts}
        for row in rows:
            by_prompt[row.prompt_id].append(ids[(row.prompt_id, row.key)])
        text_of = {ids[(r.prompt_id, r.key)]: r.text for r in everything}
        pairs = []
        for prompt in prompts:
            for a, b in select_pairs([by_prompt[prompt.pk]], strategy=strategy, per_prompt=params.pairs_per_prompt,
                                     rewards=rewards, seed=params.seed + round_.number * 7919 + prompt.pk):
                if text_of[a] != text_of[b]:
                    pairs.append((prompt.pk, (a, b)))
        for row in previous_rows:  # cross pairs: the parent's answer against one of this policy's
            mine = by_prompt[row.prompt_id]
            rng = random.Random(f"cross:{round_.pk}:{row.key}")
            candidate = mine[rng.randrange(len(mine))] if mine else None
            if candidate is not None and text_of[candidate] != row.text:
                pairs.append((row.prompt_id, (ids[(row.prompt_id, row.key)], candidate)))
        # Handed out before older material: the loop waits on these votes.
        comparison_ids = add_comparisons(project=round_.project, round=round_.number, pairs=pairs,
                                         priority=100 + round_.number)
        feedback = 0
        if params.ai_feedback and reward_model is not None and rewards:
            feedback = _store_ai_feedback(reward_model, comparison_ids, pairs, rewards)
        metrics = {
            "sampling": {
                "prompts": len(prompts), "completions": len(rows), "parent_completions": len(previous_rows),
                "comparisons": len(set(comparison_ids)), "pair_strategy": strategy, "ai_feedback": feedback,
                "mean_length_tokens": _mean([r.metadata["num_tokens"] for r in rows]),
                "mean_length_chars": _mean([len(r.text) for r in rows]),
                "empty": sum(1 for r in rows if not r.text.strip()),
                "truncation": sampling_truncation(samples),
            }
        }
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        _transition(locked, Round.State.SAMPLING, Round.State.LABELING, metrics=metrics, job_id=None)
    say(f"round {round_.number}: {len(set(comparison_ids))} comparisons open for labeling")
    _progress(progress, 1.0, "labeling open")
    round_.refresh_from_db()
    return round_


def sampling_truncation(samples) -> dict:
    """Prompts of a sampling call cut from the left to fit the policy (positions − max_new_tokens)."""
    cut = [group[0].prompt_truncated_tokens for group in samples if group and group[0].prompt_truncated_tokens]
    return {"prompts": len(samples), "truncated_prompts": len(cut), "truncated_tokens": sum(cut)}


def _sampled_rows(round_: Round, policy: Policy, prompts, samples, sampler_params: dict) -> list[SampledCompletion]:
    rows = []
    for prompt, group in zip(prompts, samples):
        for i, sample in enumerate(group):
            rows.append(SampledCompletion(
                prompt_id=prompt.pk, key=f"r{round_.number}-p{policy.version}-{i}", text=sample.text,
                model_name=f"{policy.label}@round-{round_.number}", policy_checkpoint_id=policy.pk,
                round=round_.number, sampler_params=sampler_params, seed=int(sample.seed),
                metadata={"num_tokens": sample.num_tokens, "finish_reason": sample.finish_reason,
                          "policy_version": policy.version, "prompt_truncated_tokens": sample.prompt_truncated_tokens},
            ))
    return rows


def _current_reward_model(project: Project):
    from rewards.models import RewardModel

    return RewardModel.objects.filter(project=project, is_current=True, status=RewardModel.Status.READY).first()


def _score(reward_model, rows: list[SampledCompletion]) -> dict[tuple[int, str], float]:
    """r(prompt, sample) under the reward model, keyed by (prompt id, sample key)."""
    from rewards.services import MAX_SCORE_ITEMS, score_items

    prompts = conversations_by_id(reward_model.project, [r.prompt_id for r in rows])
    scores: dict[tuple[int, str], float] = {}
    for start in range(0, len(rows), MAX_SCORE_ITEMS):
        chunk = rows[start:start + MAX_SCORE_ITEMS]
        values = score_items(reward_model=reward_model, items=[(prompts[r.prompt_id], r.text) for r in chunk])
        scores.update({(r.prompt_id, r.key): v for r, v in zip(chunk, values)})
    return scores


def _store_ai_feedback(reward_model, comparison_ids, pairs, rewards: dict[int, float]) -> int:
    import math

    rows = {}
    for comparison_id, (_, (a, b)) in zip(comparison_ids, pairs):
        winner, loser = (a, b) if rewards[a] >= rewards[b] else (b, a)
        margin = rewards[winner] - rewards[loser]
        rows[comparison_id] = AIFeedback(
            comparison_id=comparison_id, reward_model=reward_model, winner_id=winner, loser_id=loser,
            margin=margin, probability=1 / (1 + math.exp(-margin)),
        )
    AIFeedback.objects.bulk_create(list(rows.values()), ignore_conflicts=True)
    return len(rows)


# --- rounds: labeling → reward model ---------------------------------------------------------------
def round_progress(round_: Round) -> dict:
    """Human votes on the round's comparisons against what its overlap target asks."""
    comparisons = Comparison.objects.filter(project_id=round_.project_id, round=round_.number, gold_label="")
    total = comparisons.count()
    complete = comparisons.filter(is_complete=True).count()
    votes = Vote.objects.filter(assignment__comparison__in=comparisons, source=Vote.Source.HUMAN).count()
    target = total * round_.project.overlap_target
    return {"comparisons": total, "complete": complete, "votes": votes, "target_votes": target,
            "fraction": (votes / target) if target else 0.0}


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
                "advance with force to go on early")
        if progress["votes"] < max(1, params.min_votes):
            raise RoundStateError(f"round {locked.number} has {progress['votes']} human votes; at least "
                                  f"{max(1, params.min_votes)} are needed")
        # The rewards app's auto-retrain would train a second version for this round: claim it.
        trigger, _ = RetrainTrigger.objects.get_or_create(project_id=locked.project_id, round=locked.number)
        options, step = reward_step_options(locked, params)
        reward_model, job = request_training(
            project=locked.project, user=user, options=options, trigger=f"round:{locked.number}",
        )
        trigger.reward_model = reward_model
        trigger.save(update_fields=["reward_model"])
        human = human_win_rate(locked)
        metrics = {"labeling": progress, "reward_model_step": step,
                   **({"human_win_rate_vs_parent": human} if human else {})}
        _transition(locked, Round.State.LABELING, Round.State.REWARD_MODEL, metrics=metrics, job_id=job.pk,
                    reward_model=reward_model)
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
    current = _current_reward_model(round_.project)
    if params.reward_retrain == "full" or current is None:
        mode = "full" if params.reward_retrain == "full" else "full (no reward model yet)"
        return options, {"mode": mode}
    options.setdefault("rounds", [round_.number])
    options.setdefault("replay_pairs", params.reward_replay_pairs)
    options.setdefault("max_new_pairs", params.reward_max_new_pairs)
    options.setdefault("warm_start", True)
    return options, {"mode": "bounded", "warm_start_from": current.version, "rounds": options["rounds"],
                     "replay_pairs": options["replay_pairs"], "max_new_pairs": options["max_new_pairs"]}


def human_win_rate(round_: Round) -> dict | None:
    """Human votes on cross pairs (this round's policy vs its parent): wins + ties/2 over votes."""
    policy = round_.policy
    if not policy.parent_id:
        return None
    mine, parent = policy.pk, policy.parent_id
    cross = {}
    for comparison_id, completion_id, checkpoint in ComparisonItem.objects.filter(
        comparison__project_id=round_.project_id, comparison__round=round_.number
    ).values_list("comparison_id", "completion_id", "completion__policy_checkpoint_id"):
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
    return {"policy_version": policy.version, "parent_version": policy.parent.version, "votes": total,
            "wins": wins, "ties": ties, "win_rate": (wins + ties / 2) / total}


def maybe_advance(*, project_id: int, round_number: int) -> bool:
    """After a vote: a labeling round with auto_advance whose comparisons are all complete moves on."""
    round_ = Round.objects.select_related("project", "policy").filter(
        project_id=project_id, number=round_number, state=Round.State.LABELING).first()
    if round_ is None or not RoundParams.from_dict(round_.params).auto_advance:
        return False
    open_left = Comparison.objects.filter(project_id=project_id, round=round_number, gold_label="",
                                          is_open=True, is_complete=False).exists()
    if open_left:
        return False
    try:
        advance_round(round_=round_)
    except RoundStateError:
        return False  # someone else advanced it first
    return True


# --- rounds: reward model → policy update → done ---------------------------------------------------
def reward_model_finished(*, job) -> None:
    """job_finished of a reward-model job: the round that waits for it goes on, waits at the guard, or fails."""
    round_ = Round.objects.filter(state=Round.State.REWARD_MODEL, job_id=job.pk).first()
    if round_ is None:
        return
    if job.status != "succeeded":
        fail_round(round_=round_, reason=f"reward-model training {job.status}: {_tail(job.error)}",
                   cancelled=job.status == "cancelled")
        return
    from rewards.services import mark_current

    reward_model = round_.reward_model
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
        rm_metrics = {"reward_model": {"version": reward_model.version, "guard": guard,
                                       **{k: reward_model.metrics.get(k) for k in RM_METRIC_KEYS}}}
        rm_metrics["reward_model"]["accuracy_ci"] = rm_metrics["reward_model"]["accuracy_ci"] or guard["accuracy_ci"]
        if blocked:
            _transition(locked, Round.State.REWARD_MODEL, Round.State.GUARDED, metrics=rm_metrics, job_id=None,
                        reason=f"waiting at the guard: {guard['reason']}", event={"reason": guard["reason"]})
            return
        job = _enqueue(locked, UPDATE_JOB, locked.created_by)
        _transition(locked, Round.State.REWARD_MODEL, Round.State.POLICY_UPDATE, metrics=rm_metrics, job_id=job.pk,
                    event={"warning": guard["warning"]} if guard.get("warning") else None)


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
        reasons.append(f"held-out accuracy {accuracy:.3f} with 95 % interval [{low:.3f}, {high:.3f}] {where} 0.5 (chance)")
    return {"passed": not reasons, "reason": "; ".join(reasons), "accuracy": accuracy, "accuracy_ci": [low, high],
            "pairs": pairs, "min_pairs": min_pairs, "method": "wilson-95 lower bound > 0.5"}


def override_guard(*, round_: Round, user=None, who: str = ""):
    """guarded → policy_update on a researcher's explicit say-so; recorded in the history and metrics."""
    who = who or getattr(user, "username", "") or "a researcher"
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if locked.state != Round.State.GUARDED:
            raise RoundStateError(f"round {locked.number} is {locked.state}, not waiting at the guard")
        record = {"by": who, "at": timezone.now().isoformat(), "reason": locked.reason}
        _transition(locked, Round.State.GUARDED, Round.State.POLICY_UPDATE, metrics={"guard_override": record},
                    reason=f"guard overridden by {who}: {locked.reason}", event={"override_guard": True, "by": who})
        job = _enqueue(locked, UPDATE_JOB, user if getattr(user, "is_authenticated", False) else locked.created_by)
    round_.refresh_from_db()
    return job


def update_examples(round_: Round) -> list:
    """The round's human-labelled pairs (majority rule, ties dropped) as DPO examples."""
    from rewards.services import training_pairs
    from training.ml.data import PreferenceExample

    filters = {"rule": "majority", "rounds": [round_.number], "aspect": round_.project.aspect_names[0]}
    pairs, _ = training_pairs(round_.project, filters=filters, ties="drop")
    return [PreferenceExample(prompt=list(p.messages) or p.prompt, chosen=p.chosen, rejected=p.rejected)
            for p in pairs if not p.tie]


def rollout_sampler(method: str, params: RoundParams, round_number: int) -> dict:
    """The update's rollout sampler: the round's, except that PPO samples at top_p = 1 (top_k is always 0).

    The round's top_p shapes what people label; PPO's ratios and KL penalty are computed under
    the full softmax, so its rollouts must come from that distribution (as trl samples them).
    Best-of-N only ranks its samples by reward, so it keeps the round's sampler.
    """
    sampler = params.sampler(seed_offset=round_number)
    return {**sampler, "top_p": 1.0} if method == Round.Method.PPO else sampler


def run_update(*, round_id: int, job_id: int | None = None, progress: Progress | None = None,
               log: Log | None = None, should_stop: ShouldStop | None = None) -> Round:
    """The policy update of a round (DPO | PPO+KL | best-of-N), then its evaluation; the new
    checkpoint becomes the loop's current policy and the round is done."""
    round_ = _round_in(round_id, Round.State.POLICY_UPDATE)
    params = RoundParams.from_dict(round_.params)
    loop = loop_for(round_.project)
    reward_model = round_.reward_model
    if reward_model is None or reward_model.status != "ready":
        raise RoundStateError(f"round {round_.number} has no ready reward model")
    guard = (round_.metrics.get("reward_model") or {}).get("guard") or {}
    if round_.method in GUARDED_METHODS and guard.get("passed") is False and not round_.metrics.get("guard_override"):
        raise RoundStateError(f"round {round_.number}: the guard holds the {round_.method} update: {guard.get('reason')}")
    say = log or (lambda line: None)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=round_.project_id).first()
        policy = Policy.objects.create(
            project=round_.project, version=next_version(round_.project), method=round_.method,
            parent=round_.policy, round=round_, status=Policy.Status.TRAINING, job_id=job_id,
            created_by=round_.created_by,
        )
    try:
        from rewards.ml.score import RewardScorer
        from training.ml.config import SamplerParams
        from training.ml.metrics import evaluate_policy
        from training.ml.policy import read_meta

        scorer = RewardScorer(Path(reward_model.artifact_path))
        overrides = dict(params.update)
        if round_.method != Round.Method.DPO:  # rollouts sample like the round did, unless told otherwise
            overrides.setdefault("sampler", rollout_sampler(round_.method, params, round_.number))
        config = _update_config(round_.method, overrides, seed=params.seed + round_.number)
        folder = policy_dir(policy)
        if folder.exists():
            shutil.rmtree(folder)
        common = dict(policy_path=round_.policy.artifact_path, out_dir=folder, config=config,
                      progress=step_progress(progress, round_.method, start=0.0, end=0.8), should_stop=should_stop)
        prompts = prompt_conversations(round_.project, round_prompts(round_, params))
        if round_.method == Round.Method.DPO:
            from training.ml.dpo import train_dpo

            from judging.uses import with_judge_examples

            examples, mix = with_judge_examples(round_, update_examples(round_), params.judge_labels)
            if not examples:
                raise InvalidRoundParams(f"round {round_.number} has no labelled pairs (all ties?) to run DPO on")
            say(f"DPO on {len(examples)} labelled pairs of round {round_.number}")
            data = {"pairs": len(examples), "rounds": [round_.number], **mix}
            result = train_dpo(reference_path=loop.reference.artifact_path, examples=examples, **common)
        elif round_.method == Round.Method.PPO:
            from training.ml.ppo import train_ppo

            say(f"PPO on {len(prompts)} prompts against reward model v{reward_model.version}")
            data = {"prompts": len(prompts), "reward_model_version": reward_model.version}
            result = train_ppo(reference_path=loop.reference.artifact_path, prompts=prompts, reward_fn=scorer.score, **common)
        else:
            from training.ml.best_of_n import train_best_of_n

            say(f"best-of-N on {len(prompts)} prompts against reward model v{reward_model.version}")
            data = {"prompts": len(prompts), "reward_model_version": reward_model.version}
            result = train_best_of_n(prompts=prompts, reward_fn=scorer.score, **common)
        _stop_check(should_stop)
        _progress(progress, 0.85, "evaluating on held-out prompts")
        held_out = prompt_conversations(round_.project, eval_prompts(round_.project)) or prompts[:EVAL_PROMPTS]
        sampler = SamplerParams(**params.sampler(seed_offset=10_000))
        evaluation = evaluate_policy(
            policy_path=str(result.path), reference_path=loop.reference.artifact_path,
            previous_path=round_.policy.artifact_path, prompts=held_out, reward_fn=scorer.score, params=sampler,
        )
        before = evaluate_policy(
            policy_path=round_.policy.artifact_path, reference_path=loop.reference.artifact_path,
            previous_path=None, prompts=held_out, reward_fn=scorer.score, params=sampler,
        )
        update_metrics = json_safe(result.metrics)
        metrics = {"update": update_metrics, "eval": json_safe(_pick(evaluation)), "eval_before": json_safe(_pick(before)),
                   "eval_prompts": len(held_out), "truncation": {
                       "update": result.metrics.get("truncation") or {"truncated_prompts": result.metrics.get("prompts_truncated")},
                       "eval": evaluation.get("truncation")}}
        lineage = {k: v for k, v in (read_meta(result.path) or {}).items() if k in ("adapter", "base")}
        with transaction.atomic():
            Policy.objects.filter(pk=policy.pk).update(
                status=Policy.Status.READY, artifact_path=str(result.path), config=json_safe(config.as_dict()),
                data={**data, "reward_model_id": reward_model.pk, **lineage}, metrics=metrics, curve=json_safe(result.curve),
                finished_at=timezone.now(),
            )
            Loop.objects.filter(pk=loop.pk).update(current=policy, updated_at=timezone.now())
            locked = Round.objects.select_for_update().get(pk=round_.pk)
            _transition(locked, Round.State.POLICY_UPDATE, Round.State.DONE, metrics=metrics, job_id=None,
                        new_policy=policy)
        say(f"policy v{policy.version}: mean reward {evaluation.get('mean_reward'):.3f}, "
            f"KL {evaluation.get('kl_to_reference'):.3f}, mean length {evaluation.get('mean_length_tokens'):.1f} tokens")
    except BaseException as exc:
        Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.FAILED, error=error_text(exc), finished_at=timezone.now())
        raise
    round_.refresh_from_db()
    return round_


def _pick(evaluation: dict) -> dict:
    return {k: evaluation.get(k) for k in (*METRIC_KEYS, "samples")}


# --- failure and cancel --------------------------------------------------------------------------
def cancel_round(*, round_: Round, user=None) -> Round:
    """Stop an active round: its running job is asked to stop, the round is cancelled with a reason."""
    from prefloop.jobs.models import Job
    from prefloop.jobs.services import cancel_job

    who = getattr(user, "username", "") or "a researcher"
    with transaction.atomic():
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        if not locked.is_active:
            raise RoundStateError(f"round {locked.number} is already {locked.state}")
        _transition(locked, locked.state, Round.State.CANCELLED, reason=f"cancelled by {who} during {locked.state}")
        job = Job.objects.filter(pk=locked.job_id).first() if locked.job_id else None
    if job is not None:
        cancel_job(job)
    # Comparisons not yet voted on are withdrawn from annotators' queues.
    Comparison.objects.filter(project_id=locked.project_id, round=locked.number, votes_done=0,
                              imported_votes=0).update(is_open=False)
    round_.refresh_from_db()
    return round_


def fail_round(*, round_: Round, reason: str, cancelled: bool = False) -> None:
    with transaction.atomic():
        locked = Round.objects.select_for_update().filter(pk=round_.pk).first()
        if locked is None or not locked.is_active:
            return
        _transition(locked, locked.state, Round.State.CANCELLED if cancelled else Round.State.FAILED, reason=reason)


def job_finished(*, job) -> None:
    """job_finished receiver body: moves rounds on and marks failed policies."""
    if job.kind == REWARD_JOB:
        reward_model_finished(job=job)
    elif job.kind in (SAMPLE_JOB, UPDATE_JOB) and job.status != "succeeded":
        round_ = Round.objects.filter(job_id=job.pk, state__in=Round.ACTIVE).first()
        if round_ is not None:
            step = "sampling" if job.kind == SAMPLE_JOB else "policy update"
            fail_round(round_=round_, reason=f"{step} {job.status}: {_tail(job.error)}", cancelled=job.status == "cancelled")
    if job.kind in (BUILD_JOB, UPDATE_JOB) and job.status != "succeeded":
        Policy.objects.filter(job_id=job.pk, status__in=[Policy.Status.QUEUED, Policy.Status.TRAINING]).update(
            status=Policy.Status.FAILED, error=f"job {job.pk} {job.status}: {_tail(job.error)}", finished_at=timezone.now())


# --- helpers ---------------------------------------------------------------------------------------
def _round_in(round_id: int, state: str) -> Round:
    round_ = Round.objects.select_related("project", "policy", "policy__parent", "reward_model").get(pk=round_id)
    if round_.state != state:
        raise RoundStateError(f"round {round_.number} is {round_.state}, not {state}")
    return round_


def _transition(round_: Round, expected: str, new: str, *, metrics: dict | None = None, reason: str = "",
                job_id: int | None | str = "keep", event: dict | None = None, **fields) -> None:
    """The only place a round's state changes; it must still be `expected` (compare-and-set).

    event: extra fields of the history entry (a guard's reason, who overrode it)."""
    now = timezone.now()
    entry = {**_event(new, job_id=None if job_id == "keep" else job_id), **(event or {})}
    update = {"state": new, "history": [*round_.history, entry], "updated_at": now, **fields}
    if metrics:
        update["metrics"] = {**round_.metrics, **json_safe(metrics)}
    if reason:
        update["reason"] = reason[:4000]
    if job_id != "keep":
        update["job_id"] = job_id
    if new in (Round.State.DONE, Round.State.FAILED, Round.State.CANCELLED):
        update["finished_at"] = now
    if not Round.objects.filter(pk=round_.pk, state=expected).update(**update):
        raise RoundStateError(f"round {round_.number} is no longer {expected}")
    for key, value in update.items():
        setattr(round_, key, value)


def _event(state: str, *, job_id: int | None = None) -> dict:
    return {"state": state, "at": timezone.now().isoformat(), "job_id": job_id}


def _progress(progress: Progress | None, fraction: float, message: str) -> None:
    if progress:
        progress(fraction, message)


def _stop_check(should_stop: ShouldStop | None) -> None:
    if should_stop and should_stop():
        from prefloop.jobs.context import JobCancelled

        raise JobCancelled("cancelled on request")


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _tail(text: str, limit: int = 500) -> str:
    text = (text or "").strip()
    first = text.splitlines()[0] if text else ""
    return first[:limit]


