"""Sampling a round: the policy's completions, the reward model's scores, the pairs to label (job `training.sample_round`)."""

from __future__ import annotations

import logging
import random

from django.db import transaction

from annotate.models import Prompt
from annotate.selectors import conversations_by_id, prompt_conversations
from annotate.services.sampled import SampledCompletion, add_comparisons, add_sampled_completions
from training.errors import InvalidRoundParams
from training.models import AIFeedback, Policy, Round
from training.params import RoundParams
from training.policies import Log, Progress, ShouldStop
from training.selectors import current_reward_model, round_prompts
from training.services.transitions import mean_or_none, report_progress, round_in, stop_if_asked, transition

logger = logging.getLogger(__name__)


def run_sampling(
    *, round_id: int, progress: Progress | None = None, log: Log | None = None, should_stop: ShouldStop | None = None
) -> Round:
    """Sample K completions per prompt from the round's policy (and the parent's, for the human win
    rate), choose the pairs to label, store them as round-n comparisons, then open labeling."""
    round_ = round_in(round_id, Round.State.SAMPLING)
    params = RoundParams.from_dict(round_.params)
    prompts = round_prompts(round_, params)
    if not prompts:
        raise InvalidRoundParams("the project has no prompts outside the held-out evaluation set")
    say = log or (lambda line: None)
    samples, rows, previous_rows = _sample_policies(
        round_, params, prompts, progress=progress, say=say, should_stop=should_stop
    )
    report_progress(progress, 0.8, "choosing pairs")
    everything = rows + previous_rows
    reward_model = current_reward_model(round_.project)
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
        pairs = _round_pairs(round_, params, prompts, rows, previous_rows, ids=ids, strategy=strategy, rewards=rewards)
        # Handed out before older material: the loop waits on these votes.
        comparison_ids = add_comparisons(
            project=round_.project, round=round_.number, pairs=pairs, priority=100 + round_.number
        )
        feedback = 0
        if params.ai_feedback and reward_model is not None and rewards:
            feedback = _store_ai_feedback(reward_model, comparison_ids, pairs, rewards)
        metrics = {
            "sampling": {
                "prompts": len(prompts),
                "completions": len(rows),
                "parent_completions": len(previous_rows),
                "comparisons": len(set(comparison_ids)),
                "pair_strategy": strategy,
                "ai_feedback": feedback,
                "mean_length_tokens": mean_or_none([r.metadata["num_tokens"] for r in rows]),
                "mean_length_chars": mean_or_none([len(r.text) for r in rows]),
                "empty": sum(1 for r in rows if not r.text.strip()),
                "truncation": sampling_truncation(samples),
            }
        }
        locked = Round.objects.select_for_update().get(pk=round_.pk)
        transition(locked, Round.State.SAMPLING, Round.State.LABELING, metrics=metrics, job_id=None)
    say(f"round {round_.number}: {len(set(comparison_ids))} comparisons open for labeling")
    report_progress(progress, 1.0, "labeling open")
    round_.refresh_from_db()
    return round_


def _sample_policies(
    round_: Round,
    params: RoundParams,
    prompts: list[Prompt],
    *,
    progress: Progress | None,
    say: Log,
    should_stop: ShouldStop | None,
) -> tuple[list, list[SampledCompletion], list[SampledCompletion]]:
    """(the policy's raw samples, its rows, the parent's rows): K per prompt from the round's policy,
    `previous_samples` per prompt from its ready parent (for the human win rate)."""
    from training.ml.config import SamplerParams
    from training.ml.sampling import make_sampler

    policy = round_.policy
    texts = prompt_conversations(round_.project, prompts)  # each policy renders them with its own template
    sampler_params = SamplerParams(**params.sampler(seed_offset=round_.number))
    say(f"round {round_.number}: {params.k} samples for each of {len(prompts)} prompts from {policy.label}")
    report_progress(progress, 0.05, "sampling")
    samples = make_sampler(policy.artifact_path).generate(texts, n=params.k, params=sampler_params)
    stop_if_asked(should_stop)
    rows = _sampled_rows(round_, policy, prompts, samples, sampler_params.as_dict())
    parent = policy.parent if policy.parent is not None and policy.parent.status == Policy.Status.READY else None
    previous_rows: list[SampledCompletion] = []
    if parent is not None and params.previous_samples:
        report_progress(progress, 0.45, f"sampling the parent {parent.label}")
        previous = make_sampler(parent.artifact_path).generate(texts, n=params.previous_samples, params=sampler_params)
        previous_rows = _sampled_rows(round_, parent, prompts, previous, sampler_params.as_dict())
    stop_if_asked(should_stop)
    return samples, rows, previous_rows


def _round_pairs(
    round_: Round,
    params: RoundParams,
    prompts: list[Prompt],
    rows: list[SampledCompletion],
    previous_rows: list[SampledCompletion],
    *,
    ids: dict,
    strategy: str,
    rewards: dict[int, float] | None,
) -> list[tuple[int, tuple[int, int]]]:
    """The pairs to label: `strategy`'s pairs of this policy's answers per prompt (identical texts
    skipped), then cross pairs of each parent answer against one of this policy's."""
    from training.ml.pairs import select_pairs

    by_prompt: dict[int, list[int]] = {p.pk: [] for p in prompts}
    for row in rows:
        by_prompt[row.prompt_id].append(ids[(row.prompt_id, row.key)])
    text_of = {ids[(r.prompt_id, r.key)]: r.text for r in rows + previous_rows}
    pairs = []
    for prompt in prompts:
        for a, b in select_pairs(
            [by_prompt[prompt.pk]],
            strategy=strategy,
            per_prompt=params.pairs_per_prompt,
            rewards=rewards,
            seed=params.seed + round_.number * 7919 + prompt.pk,
        ):
            if text_of[a] != text_of[b]:
                pairs.append((prompt.pk, (a, b)))
    for row in previous_rows:  # cross pairs: the parent's answer against one of this policy's
        mine = by_prompt[row.prompt_id]
        rng = random.Random(f"cross:{round_.pk}:{row.key}")
        candidate = mine[rng.randrange(len(mine))] if mine else None
        if candidate is not None and text_of[candidate] != row.text:
            pairs.append((row.prompt_id, (ids[(row.prompt_id, row.key)], candidate)))
    return pairs


def sampling_truncation(samples) -> dict:
    """Prompts of a sampling call cut from the left to fit the policy (positions − max_new_tokens)."""
    cut = [group[0].prompt_truncated_tokens for group in samples if group and group[0].prompt_truncated_tokens]
    return {"prompts": len(samples), "truncated_prompts": len(cut), "truncated_tokens": sum(cut)}


def _sampled_rows(round_: Round, policy: Policy, prompts, samples, sampler_params: dict) -> list[SampledCompletion]:
    rows = []
    for prompt, group in zip(prompts, samples):
        for i, sample in enumerate(group):
            rows.append(
                SampledCompletion(
                    prompt_id=prompt.pk,
                    key=f"r{round_.number}-p{policy.version}-{i}",
                    text=sample.text,
                    model_name=f"{policy.label}@round-{round_.number}",
                    policy_checkpoint_id=policy.pk,
                    round=round_.number,
                    sampler_params=sampler_params,
                    seed=int(sample.seed),
                    metadata={
                        "num_tokens": sample.num_tokens,
                        "finish_reason": sample.finish_reason,
                        "policy_version": policy.version,
                        "prompt_truncated_tokens": sample.prompt_truncated_tokens,
                    },
                )
            )
    return rows


def _score(reward_model, rows: list[SampledCompletion]) -> dict[tuple[int, str], float]:
    """r(prompt, sample) under the reward model, keyed by (prompt id, sample key)."""
    from rewards.services import MAX_SCORE_ITEMS, score_items

    prompts = conversations_by_id(reward_model.project, [r.prompt_id for r in rows])
    scores: dict[tuple[int, str], float] = {}
    for start in range(0, len(rows), MAX_SCORE_ITEMS):
        chunk = rows[start : start + MAX_SCORE_ITEMS]
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
            comparison_id=comparison_id,
            reward_model=reward_model,
            winner_id=winner,
            loser_id=loser,
            margin=margin,
            probability=1 / (1 + math.exp(-margin)),
        )
    AIFeedback.objects.bulk_create(list(rows.values()), ignore_conflicts=True)
    return len(rows)
