"""Per-update policy metrics: reward, measured KL to the reference, win rates, length (verbosity drift).

All figures come from fresh samples of held-out prompts with the same SamplerParams:
  mean_reward            mean r(x, y), y ~ π
  kl_to_reference        mean over samples of Σ_t [log π(y_t) − log π_ref(y_t)], y ~ π — the Monte-Carlo
                         estimate of KL(π ‖ π_ref) in nats per response (temperature-1 log-probs of the
                         models themselves, whatever the sampler's temperature)
  win_rate_vs_previous   share of (prompt, i) where r(x, y_π,i) > r(x, y_prev,i), ties count ½
  win_rate_vs_reference  the same against samples of the reference
  mean_length_tokens / mean_length_chars of π's samples; samples: how many
Reward vs KL over updates is the over-optimisation picture (Gao et al. 2022).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from training.ml.config import SamplerParams
from training.ml.data import join_response

RewardFn = Callable[[list[str], list[str]], list[float]]


def win_rate(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    """Share of paired comparisons where ours > theirs, ties ½."""
    if len(ours) != len(theirs):
        raise ValueError("win_rate needs paired scores")
    if not ours:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ours, theirs)) / len(ours)


def sequence_logprobs(model, tokenizer, prompts: Sequence, responses: Sequence[str], *, add_eos: bool = False) -> list[float]:
    """Σ_t log π(y_t | x, y_<t) of each response text after the rendered prompt (eos term with add_eos).

    Prompts are rendered and left-truncated as sampling does (rewards.ml.chat.encode_prompt); a
    response follows a chat template's generation prompt as is, plain text with one leading space.
    """
    from rewards.ml.chat import encode_prompt, has_chat_template, prompt_budget
    from training.ml.logprobs import sequence_logprobs_ids

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    response_ids = [tokenizer(r.strip() if has_chat_template(tokenizer) else join_response(r), add_special_tokens=False)["input_ids"]
                    + ([tokenizer.eos_token_id] if add_eos else []) for r in responses]
    longest = max((len(r) for r in response_ids), default=1)
    budget = prompt_budget(model.config, max(1, longest))
    prompt_ids = [encode_prompt(tokenizer, p, max_tokens=budget).ids for p in prompts]
    return sequence_logprobs_ids(model, prompt_ids, response_ids, pad_token_id=tokenizer.pad_token_id)


def _samples(model, tokenizer, prompts, n, params):
    from training.ml.sampling import generate_ids, to_sample

    rollouts = generate_ids(model, tokenizer, prompts, n=n, params=params)
    return rollouts, [to_sample(tokenizer, r, params.seed) for r in rollouts]


def evaluate_policy(
    *,
    policy_path: Path | str,
    reference_path: Path | str,
    previous_path: Path | str | None = None,
    prompts: Sequence,  # strings or conversations
    reward_fn: RewardFn,
    params: SamplerParams = SamplerParams(),
    n: int = 1,
) -> dict:
    """The metrics in the module docstring for `policy_path` on `prompts` (held out from training).

    win_rate_vs_previous is None without previous_path. Models are loaded one after the other
    beside the policy; sampling uses the same params (seed included) for all three.
    """
    import torch

    from training.ml.logprobs import sequence_logprobs_ids
    from training.ml.policy import load_policy
    from training.ml.sampling import truncation_report

    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts")
    model, tokenizer = load_policy(policy_path)
    rollouts, samples = _samples(model, tokenizer, prompts, n, params)
    expanded = [prompts[r.prompt_index] for r in rollouts]
    rewards = [float(r) for r in reward_fn(expanded, [s.text for s in samples])]
    prompt_ids = [r.prompt_ids for r in rollouts]
    response_ids = [r.response_ids for r in rollouts]
    logp = sequence_logprobs_ids(model, prompt_ids, response_ids, pad_token_id=tokenizer.pad_token_id)
    del model
    reference, ref_tokenizer = load_policy(reference_path)
    if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError("policy and reference tokenizers differ: KL needs one vocabulary")
    ref_logp = sequence_logprobs_ids(reference, prompt_ids, response_ids, pad_token_id=tokenizer.pad_token_id)
    _, ref_samples = _samples(reference, ref_tokenizer, prompts, n, params)
    ref_rewards = [float(r) for r in reward_fn(expanded, [s.text for s in ref_samples])]
    del reference
    vs_previous = None
    if previous_path is not None:
        previous, prev_tokenizer = load_policy(previous_path)
        _, prev_samples = _samples(previous, prev_tokenizer, prompts, n, params)
        vs_previous = win_rate(rewards, [float(r) for r in reward_fn(expanded, [s.text for s in prev_samples])])
        del previous
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    kls = [a - b for a, b in zip(logp, ref_logp)]
    return {
        "mean_reward": sum(rewards) / len(rewards),
        "kl_to_reference": sum(kls) / len(kls),
        "win_rate_vs_previous": vs_previous,
        "win_rate_vs_reference": win_rate(rewards, ref_rewards),
        "mean_length_tokens": sum(s.num_tokens for s in samples) / len(samples),
        "mean_length_chars": sum(len(s.text) for s in samples) / len(samples),
        "samples": len(samples),
        "reference_mean_reward": sum(ref_rewards) / len(ref_rewards),
        "stop_share": sum(s.finish_reason == "stop" for s in samples) / len(samples),
        "truncation": truncation_report([rollouts[i * n].prompt for i in range(len(prompts))]),
        "params": params.as_dict(),
        "n": n,
    }


__all__ = ["evaluate_policy", "sequence_logprobs", "win_rate"]
