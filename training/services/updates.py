"""A round's policy update: DPO / PPO / best-of-N on the round's data, then evaluation (job `training.update_policy`)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotate.models import Project
from annotate.selectors import prompt_conversations
from prefloop.core.json_safe import json_safe
from prefloop.limits import OutOfBounds, check_limits, field_error
from training.errors import InvalidRoundParams, RoundStateError
from training.models import Loop, Policy, Round
from training.params import RoundParams
from training.policies import (
    EVAL_PROMPTS,
    Log,
    Progress,
    ShouldStop,
    error_text,
    next_version,
    policy_dir,
    step_progress,
)
from training.selectors import eval_prompts, loop_for, round_prompts
from training.services.transitions import report_progress, round_in, stop_if_asked, transition

logger = logging.getLogger(__name__)

GUARDED_METHODS = ("ppo", "best_of_n")  # they optimise the reward model; DPO trains on the votes themselves

METRIC_KEYS = (
    "mean_reward",
    "kl_to_reference",
    "kl_to_reference_se",
    "kl_to_reference_k1",
    "kl_samples",
    "kl_method",
    "win_rate_vs_previous",
    "win_rate_vs_reference",
    "mean_length_tokens",
    "mean_length_chars",
)


def check_update_overrides(method: str, overrides: dict) -> None:
    from dataclasses import fields as dc_fields

    config_class = _config_class(method)
    known = {f.name for f in dc_fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidRoundParams(f"update: unknown {method} option(s) {unknown}; known: {sorted(known)}")
    try:
        config = update_config(method, overrides, seed=0)
        check_limits(config.as_dict(), scope="update")  # steps, epochs, batch sizes, lengths: PREFLOOP_LIMITS
    except OutOfBounds as exc:
        raise field_error(InvalidRoundParams, exc, prefix="update.") from None
    except (TypeError, ValueError) as exc:
        raise InvalidRoundParams(f"update: {exc}") from None


def _config_class(method: str):
    from training.ml import config as c  # dataclasses only: no torch import

    return {"dpo": c.DPOConfig, "ppo": c.PPOConfig, "best_of_n": c.BestOfNConfig}[method]


def update_config(method: str, overrides: dict, *, seed: int):
    return _config_class(method).from_dict({"seed": seed, **overrides})


def update_examples(round_: Round) -> list:
    """The round's human-labelled pairs (majority rule, ties dropped) as DPO examples."""
    from rewards.services import training_pairs
    from training.ml.data import PreferenceExample

    filters = {"rule": "majority", "rounds": [round_.number], "aspect": round_.project.aspect_names[0]}
    pairs, _ = training_pairs(round_.project, filters=filters, ties="drop")
    return [
        PreferenceExample(prompt=list(p.messages) or p.prompt, chosen=p.chosen, rejected=p.rejected)
        for p in pairs
        if not p.tie
    ]


def rollout_sampler(method: str, params: RoundParams, round_number: int) -> dict:
    """The update's rollout sampler: the round's, except that PPO samples at top_p = 1 (top_k is always 0).

    The round's top_p shapes what people label; PPO's ratios and KL penalty are computed under
    the full softmax, so its rollouts must come from that distribution (as trl samples them).
    Best-of-N only ranks its samples by reward, so it keeps the round's sampler.
    """
    sampler = params.sampler(seed_offset=round_number)
    return {**sampler, "top_p": 1.0} if method == Round.Method.PPO else sampler


@dataclass
class UpdateInputs:
    """What an update method gets: the round, its reward model and scorer, the prompts, the engine's common kwargs."""

    round_: Round
    reference_path: str
    reward_model: Any
    scorer: Any
    prompts: list
    common: dict
    say: Log


def _update_dpo(inputs: UpdateInputs) -> tuple[dict, Any]:
    from judging.uses import with_judge_examples
    from training.ml.dpo import train_dpo

    round_ = inputs.round_
    judge_labels = RoundParams.from_dict(round_.params).judge_labels
    examples, mix = with_judge_examples(round_, update_examples(round_), judge_labels)
    if not examples:
        raise InvalidRoundParams(f"round {round_.number} has no labelled pairs (all ties?) to run DPO on")
    inputs.say(f"DPO on {len(examples)} labelled pairs of round {round_.number}")
    data = {"pairs": len(examples), "rounds": [round_.number], **mix}
    return data, train_dpo(reference_path=inputs.reference_path, examples=examples, **inputs.common)


def _update_ppo(inputs: UpdateInputs) -> tuple[dict, Any]:
    from training.ml.ppo import train_ppo

    inputs.say(f"PPO on {len(inputs.prompts)} prompts against reward model v{inputs.reward_model.version}")
    data = {"prompts": len(inputs.prompts), "reward_model_version": inputs.reward_model.version}
    return data, train_ppo(
        reference_path=inputs.reference_path, prompts=inputs.prompts, reward_fn=inputs.scorer.score, **inputs.common
    )


def _update_best_of_n(inputs: UpdateInputs) -> tuple[dict, Any]:
    from training.ml.best_of_n import train_best_of_n

    inputs.say(f"best-of-N on {len(inputs.prompts)} prompts against reward model v{inputs.reward_model.version}")
    data = {"prompts": len(inputs.prompts), "reward_model_version": inputs.reward_model.version}
    return data, train_best_of_n(prompts=inputs.prompts, reward_fn=inputs.scorer.score, **inputs.common)


# The update function of each method: (inputs) -> (the policy's data record, the engine's UpdateResult).
UPDATES: dict[str, Callable[[UpdateInputs], tuple[dict, Any]]] = {
    Round.Method.DPO: _update_dpo,
    Round.Method.PPO: _update_ppo,
    Round.Method.BEST_OF_N: _update_best_of_n,
}


def _updatable_round(round_id: int) -> Round:
    """The round, if it is in policy_update with a ready reward model and no guard holding it."""
    round_ = round_in(round_id, Round.State.POLICY_UPDATE)
    reward_model = round_.reward_model
    if reward_model is None or reward_model.status != "ready":
        raise RoundStateError(f"round {round_.number} has no ready reward model")
    guard = (round_.metrics.get("reward_model") or {}).get("guard") or {}
    if round_.method in GUARDED_METHODS and guard.get("passed") is False and not round_.metrics.get("guard_override"):
        raise RoundStateError(
            f"round {round_.number}: the guard holds the {round_.method} update: {guard.get('reason')}"
        )
    return round_


def _new_policy(round_: Round, job_id: int | None) -> Policy:
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=round_.project_id).first()
        return Policy.objects.create(
            project=round_.project,
            version=next_version(round_.project),
            method=round_.method,
            parent=round_.policy,
            round=round_,
            status=Policy.Status.TRAINING,
            job_id=job_id,
            created_by=round_.created_by,
        )


def _evaluation_metrics(
    round_: Round, params: RoundParams, result: Any, *, reference_path: str, scorer: Any, prompts: list
) -> tuple[dict, dict]:
    """(the round's metrics, the new policy's evaluation) on the held-out prompts, before and after."""
    from training.ml.config import SamplerParams
    from training.ml.metrics import evaluate_policy

    held_out = prompt_conversations(round_.project, eval_prompts(round_.project)) or prompts[:EVAL_PROMPTS]
    sampler = SamplerParams(**params.sampler(seed_offset=10_000))
    evaluation = evaluate_policy(
        policy_path=str(result.path),
        reference_path=reference_path,
        previous_path=round_.policy.artifact_path,
        prompts=held_out,
        reward_fn=scorer.score,
        params=sampler,
    )
    before = evaluate_policy(
        policy_path=round_.policy.artifact_path,
        reference_path=reference_path,
        previous_path=None,
        prompts=held_out,
        reward_fn=scorer.score,
        params=sampler,
    )
    metrics = {
        "update": json_safe(result.metrics),
        "eval": json_safe(_pick(evaluation)),
        "eval_before": json_safe(_pick(before)),
        "eval_prompts": len(held_out),
        "truncation": {
            "update": result.metrics.get("truncation")
            or {"truncated_prompts": result.metrics.get("prompts_truncated")},
            "eval": evaluation.get("truncation"),
        },
    }
    return metrics, evaluation


def run_update(
    *,
    round_id: int,
    job_id: int | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
    should_stop: ShouldStop | None = None,
) -> Round:
    """The policy update of a round (UPDATES[method]: DPO | PPO+KL | best-of-N), then its evaluation;
    the new checkpoint becomes the loop's current policy and the round is done."""
    round_ = _updatable_round(round_id)
    params = RoundParams.from_dict(round_.params)
    loop = loop_for(round_.project)
    reward_model = round_.reward_model
    assert reward_model is not None  # checked by _updatable_round
    policy = _new_policy(round_, job_id)
    try:
        from rewards.ml.score import RewardScorer
        from training.ml.policy import read_meta

        scorer = RewardScorer(Path(reward_model.artifact_path))
        overrides = dict(params.update)
        if round_.method != Round.Method.DPO:  # rollouts sample like the round did, unless told otherwise
            overrides.setdefault("sampler", rollout_sampler(round_.method, params, round_.number))
        config = update_config(round_.method, overrides, seed=params.seed + round_.number)
        folder = policy_dir(policy)
        if folder.exists():
            shutil.rmtree(folder)
        common = dict(
            policy_path=round_.policy.artifact_path,
            out_dir=folder,
            config=config,
            progress=step_progress(progress, round_.method, start=0.0, end=0.8),
            should_stop=should_stop,
        )
        prompts = prompt_conversations(round_.project, round_prompts(round_, params))
        say = log or (lambda line: None)
        inputs = UpdateInputs(round_, loop.reference.artifact_path, reward_model, scorer, prompts, common, say)
        data, result = UPDATES[round_.method](inputs)
        stop_if_asked(should_stop)
        report_progress(progress, 0.85, "evaluating on held-out prompts")
        metrics, evaluation = _evaluation_metrics(
            round_, params, result, reference_path=loop.reference.artifact_path, scorer=scorer, prompts=prompts
        )
        lineage = {k: v for k, v in (read_meta(Path(result.path)) or {}).items() if k in ("adapter", "base")}
        with transaction.atomic():
            Policy.objects.filter(pk=policy.pk).update(
                status=Policy.Status.READY,
                artifact_path=str(result.path),
                config=json_safe(config.as_dict()),
                data={**data, "reward_model_id": reward_model.pk, **lineage},
                metrics=metrics,
                curve=json_safe(result.curve),
                finished_at=timezone.now(),
            )
            Loop.objects.filter(pk=loop.pk).update(current=policy, updated_at=timezone.now())
            locked = Round.objects.select_for_update().get(pk=round_.pk)
            transition(
                locked, Round.State.POLICY_UPDATE, Round.State.DONE, metrics=metrics, job_id=None, new_policy=policy
            )
        say(
            f"policy v{policy.version}: mean reward {evaluation.get('mean_reward'):.3f}, "
            f"KL {evaluation.get('kl_to_reference'):.3f}, mean length {evaluation.get('mean_length_tokens'):.1f} tokens"
        )
    except BaseException as exc:
        Policy.objects.filter(pk=policy.pk).update(
            status=Policy.Status.FAILED, error=error_text(exc), finished_at=timezone.now()
        )
        raise
    round_.refresh_from_db()
    return round_


def _pick(evaluation: dict) -> dict:
    return {k: evaluation.get(k) for k in (*METRIC_KEYS, "samples")}
