"""Per-update policy metrics: reward, measured KL to the reference, win rates, length (verbosity drift).

Reward, win rates and length come from fresh samples of held-out prompts with the round's SamplerParams:
  mean_reward            mean r(x, y), y ~ π
  win_rate_vs_previous   share of (prompt, i) where r(x, y_π,i) > r(x, y_prev,i), ties count ½
  win_rate_vs_reference  the same against samples of the reference
  mean_length_tokens / mean_length_chars of π's samples; samples: how many
KL(π ‖ π_ref) comes from samples of π itself (temperature 1, top_p 1, top_k 0: the distribution
whose log-probs are used; a truncated sampler would bias it):
  kl_to_reference        mean over samples of Σ_t k3_t, k3_t = (ρ_t − 1) − log ρ_t, ρ_t = π_ref(y_t)/π(y_t)
                         (Schulman's k3). Per token E_{y_t~π}[k3_t] = KL(π(·|y_<t) ‖ π_ref(·|y_<t)), so the
                         sum is an unbiased estimate of the sequence KL (chain rule), and k3 ≥ 0 always:
                         the estimate is never negative. Nats per response.
  kl_to_reference_se     its standard error (sample std / √n over responses); kl_samples: n
  kl_to_reference_k1     the plain Σ_t log π/π_ref mean (unbiased too, but may be negative), for comparison
Reward vs KL over updates is the over-optimisation picture (Gao et al. 2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from rewards.ml.chat import PromptLike
from training.ml.config import SamplerParams
from training.ml.data import join_response

RewardFn = Callable[[list[PromptLike], list[str]], list[float]]  # (prompts as given, responses)


def win_rate(ours: Sequence[float], theirs: Sequence[float]) -> float | None:
    """Share of paired comparisons where ours > theirs, ties ½."""
    if len(ours) != len(theirs):
        raise ValueError("win_rate needs paired scores")
    if not ours:
        return None
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ours, theirs)) / len(ours)


def sequence_logprobs(
    model, tokenizer, prompts: Sequence, responses: Sequence[str], *, add_eos: bool = False
) -> list[float]:
    """Σ_t log π(y_t | x, y_<t) of each response text after the rendered prompt (eos term with add_eos).

    Prompts are rendered and left-truncated as sampling does (rewards.ml.chat.encode_prompt); a
    response follows a chat template's generation prompt as is, plain text with one leading space.
    """
    from rewards.ml.chat import encode_prompt, has_chat_template, prompt_budget
    from training.ml.logprobs import sequence_logprobs_ids

    if len(prompts) != len(responses):
        raise ValueError("prompts and responses differ in length")
    response_ids = [
        tokenizer(r.strip() if has_chat_template(tokenizer) else join_response(r), add_special_tokens=False)[
            "input_ids"
        ]
        + ([tokenizer.eos_token_id] if add_eos else [])
        for r in responses
    ]
    longest = max((len(r) for r in response_ids), default=1)
    budget = prompt_budget(model.config, max(1, longest))
    prompt_ids = [encode_prompt(tokenizer, p, max_tokens=budget).ids for p in prompts]
    return sequence_logprobs_ids(model, prompt_ids, response_ids, pad_token_id=tokenizer.pad_token_id)


KL_METHOD = "k3 per token summed per response; y ~ π at temperature 1, top_p 1, top_k 0"


def kl_estimate(logp_tokens: Sequence[Sequence[float]], ref_logp_tokens: Sequence[Sequence[float]]) -> dict:
    """KL(π ‖ π_ref) from per-token log-probs of responses sampled from π (see the module docstring).

    # [n][T_i] x2 -> {kl_to_reference, kl_to_reference_se, kl_to_reference_k1, kl_samples, kl_method}
    """
    if len(logp_tokens) != len(ref_logp_tokens):
        raise ValueError("logp_tokens and ref_logp_tokens differ in length")
    k3, k1 = [], []
    for mine, ref in zip(logp_tokens, ref_logp_tokens):
        if len(mine) != len(ref):
            raise ValueError("a response has different token counts under the two models")
        deltas = [b - a for a, b in zip(mine, ref)]  # log ρ_t = log π_ref(y_t) − log π(y_t)
        k3.append(sum(math.expm1(d) - d for d in deltas))  # expm1: exact near ρ = 1
        k1.append(-sum(deltas))
    n = len(k3)
    mean = sum(k3) / n if n else float("nan")
    se = math.sqrt(sum((v - mean) ** 2 for v in k3) / (n - 1) / n) if n > 1 else float("nan")
    return {
        "kl_to_reference": mean,
        "kl_to_reference_se": se,
        "kl_to_reference_k1": sum(k1) / n if n else float("nan"),
        "kl_samples": n,
        "kl_method": KL_METHOD,
    }


def token_logprobs_ids(
    model, prompt_ids, response_ids, *, pad_token_id: int, batch_size: int = 16
) -> list[list[float]]:
    """[log π(y_t | x, y_<t) for t] per (prompt ids, response ids) pair (temperature 1)."""
    import torch

    from training.ml.logprobs import build_batch, response_logprobs

    device = next(model.parameters()).device
    out: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(prompt_ids), batch_size):
            responses = response_ids[start : start + batch_size]
            batch = build_batch(
                prompt_ids[start : start + batch_size], responses, pad_token_id=pad_token_id, device=device
            )
            logp = response_logprobs(model, batch).tolist()
            out += [row[: len(r)] for row, r in zip(logp, responses)]
    return out


def kl_sampler(params: SamplerParams) -> SamplerParams:
    """The sampler of the KL samples: π itself (temperature 1, top_p 1), the round's length and seed."""
    return SamplerParams(temperature=1.0, top_p=1.0, max_new_tokens=params.max_new_tokens, seed=params.seed + 1)


def kl_to_reference(
    *,
    policy_path: Path | str,
    reference_path: Path | str,
    prompts: Sequence[str],
    n: int = 4,
    params: SamplerParams = SamplerParams(),
) -> dict:
    """KL(π ‖ π_ref) on n samples per prompt drawn from π (kl_sampler(params)); see kl_estimate.

    The two models are loaded one after the other.
    """
    from training.ml.policy import load_policy

    model, tokenizer = load_policy(policy_path)
    rollouts, _ = _samples(model, tokenizer, list(prompts), n, kl_sampler(params))
    mine = token_logprobs_ids(
        model, [r.prompt_ids for r in rollouts], [r.response_ids for r in rollouts], pad_token_id=tokenizer.pad_token_id
    )
    del model
    return kl_estimate(mine, _reference_token_logprobs(reference_path, tokenizer, rollouts))


def _reference_token_logprobs(reference_path, tokenizer, rollouts, reference=None) -> list[list[float]]:
    from training.ml.policy import load_policy

    if reference is None:
        reference, ref_tokenizer = load_policy(reference_path)
        if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError("policy and reference tokenizers differ: KL needs one vocabulary")
    return token_logprobs_ids(
        reference,
        [r.prompt_ids for r in rollouts],
        [r.response_ids for r in rollouts],
        pad_token_id=tokenizer.pad_token_id,
    )


def _samples(model, tokenizer, prompts, n, params):
    from training.ml.sampling import generate_ids, to_sample

    rollouts = generate_ids(model, tokenizer, prompts, n=n, params=params)
    return rollouts, [to_sample(tokenizer, r, params.seed) for r in rollouts]


def _win_rate_vs(
    other_path: Path | str,
    prompts: list,
    expanded: list,
    rewards: list[float],
    reward_fn: RewardFn,
    n: int,
    params: SamplerParams,
) -> float | None:
    """The win rate of `rewards` over another policy's samples with the same params."""
    from training.ml.policy import load_policy

    other, other_tokenizer = load_policy(other_path)
    _, other_samples = _samples(other, other_tokenizer, prompts, n, params)
    result = win_rate(rewards, [float(r) for r in reward_fn(expanded, [s.text for s in other_samples])])
    del other
    return result


def evaluate_policy(
    *,
    policy_path: Path | str,
    reference_path: Path | str,
    previous_path: Path | str | None = None,
    prompts: Sequence,  # strings or conversations
    reward_fn: RewardFn,
    params: SamplerParams = SamplerParams(),
    n: int = 1,
    kl_samples: int = 4,
) -> dict:
    """The metrics in the module docstring for `policy_path` on `prompts` (held out from training).

    win_rate_vs_previous is None without previous_path. Models are loaded one after the other
    beside the policy; sampling uses the same params (seed included) for all three. The KL
    samples (kl_samples per prompt) are drawn apart, from π at temperature 1 and top_p 1, unless
    `params` already is that sampler and kl_samples == n (then the reward samples serve).
    The policy and reference stay inline: each is loaded, used and freed in turn, so that order
    (and the peak memory it bounds) reads from top to bottom.
    """
    import torch

    from training.ml.policy import load_policy
    from training.ml.sampling import truncation_report

    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts")
    if kl_samples < 1:
        raise ValueError("kl_samples must be positive")
    model, tokenizer = load_policy(policy_path)
    rollouts, samples = _samples(model, tokenizer, prompts, n, params)
    expanded = [prompts[r.prompt_index] for r in rollouts]
    rewards = [float(r) for r in reward_fn(expanded, [s.text for s in samples])]
    kl_params = kl_sampler(params)
    if params.temperature == 1.0 and params.top_p == 1.0 and kl_samples == n:
        kl_rollouts = rollouts
    else:
        kl_rollouts, _ = _samples(model, tokenizer, prompts, kl_samples, kl_params)
    logp = token_logprobs_ids(
        model,
        [r.prompt_ids for r in kl_rollouts],
        [r.response_ids for r in kl_rollouts],
        pad_token_id=tokenizer.pad_token_id,
    )
    del model
    reference, ref_tokenizer = load_policy(reference_path)
    if ref_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError("policy and reference tokenizers differ: KL needs one vocabulary")
    kl = kl_estimate(logp, _reference_token_logprobs(reference_path, tokenizer, kl_rollouts, reference=reference))
    _, ref_samples = _samples(reference, ref_tokenizer, prompts, n, params)
    ref_rewards = [float(r) for r in reward_fn(expanded, [s.text for s in ref_samples])]
    del reference
    vs_previous = None
    if previous_path is not None:
        vs_previous = _win_rate_vs(previous_path, prompts, expanded, rewards, reward_fn, n, params)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "mean_reward": sum(rewards) / len(rewards),
        **kl,
        "win_rate_vs_previous": vs_previous,
        "win_rate_vs_reference": win_rate(rewards, ref_rewards),
        "mean_length_tokens": sum(s.num_tokens for s in samples) / len(samples),
        "mean_length_chars": sum(len(s.text) for s in samples) / len(samples),
        "samples": len(samples),
        "reference_mean_reward": sum(ref_rewards) / len(ref_rewards),
        "stop_share": sum(s.finish_reason == "stop" for s in samples) / len(samples),
        "truncation": truncation_report([rollouts[i * n].prompt for i in range(len(prompts))]),
        "params": params.as_dict(),
        "kl_params": kl_params.as_dict(),
        "n": n,
    }


__all__ = [
    "KL_METHOD",
    "evaluate_policy",
    "kl_estimate",
    "kl_sampler",
    "kl_to_reference",
    "sequence_logprobs",
    "token_logprobs_ids",
    "win_rate",
]
