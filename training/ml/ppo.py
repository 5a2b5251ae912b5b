"""PPO with a KL penalty to the reference policy (InstructGPT's recipe), compact and readable.

Objective: maximise J(π) = E_{x, y~π}[r(x, y)] − β·KL(π(·|x) ‖ π_ref(·|x)).
One update = one rollout + `ppo_epochs` passes over it in minibatches:
  1. rollout: one response per prompt from the current policy at the sampler's temperature, top_p = 1,
     top_k = 0 (as trl): the log-probs, ratios and KL below are those of the full softmax, so the
     rollouts must come from it (PPOConfig refuses top_p < 1; a truncated sampler would bias them);
  2. score: r(x, y) from `reward_fn`, standardised over the batch (normalize_rewards); per-token reward r_t = −β (log π_old(y_t) − log π_ref(y_t)),
     plus r(x, y) on the last token (Ziegler et al. 2019);
  3. advantages: GAE(γ, λ) over the response tokens with the value head's V_t;
  4. loss: clipped surrogate + vf_coef · (clipped) value loss; AdamW step per minibatch;
  5. β: fixed, or Ziegler's adaptive controller toward `target_kl`.
trl ≥ 1.13 has no PPO trainer (see docs/training-engine.md); this module is ~the
rlhf-book/trl 0.x algorithm with the value head as a linear layer on the policy's last hidden
state, saved beside the policy as value_head.safetensors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from rewards.ml.chat import PromptLike
from training.ml.config import PPOConfig
from training.ml.results import TrainingStopped, UpdateResult

RewardFn = Callable[[list[PromptLike], list[str]], list[float]]  # (prompts as given, responses)
Progress = Callable[[int, int, dict], None]


# ---- pure functions -----------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ x·m / Σ m   # (B, T), (B, T) -> ()"""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked entries; zero on padding   # (B, T), (B, T) -> (B, T)"""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_penalized_rewards(
    scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards r_t = −β (log π(y_t) − log π_ref(y_t)) + [t = last] · r(x, y)

    # scores (B,), logp (B, T), ref_logp (B, T), mask (B, T) -> rewards (B, T), kl (B, T)
    kl_t = log π(y_t) − log π_ref(y_t) is the sampled estimate whose sum over t estimates
    KL(π(·|x) ‖ π_ref(·|x)) for y ~ π. Padding columns get 0.
    """
    kl = (logp - ref_logp) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(-1).long() - 1).clamp(min=0)  # (B,) index of each response's last token
    rewards[torch.arange(rewards.shape[0]), last] += scores
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded responses   # (B, T) x3 -> advantages (B, T), returns (B, T)

    δ_t = r_t + γ V_{t+1} − V_t,   A_t = δ_t + γ λ A_{t+1},   R_t = A_t + V_t,
    with V and A beyond a response's last token equal to 0 (the episode ends there).
    """
    rewards, values, mask = rewards * mask, values * mask, mask.to(rewards.dtype)
    width = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(width)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * mask[:, t]
        # on padding, carry nothing back: the next real token sees V = A = 0
        next_value = values[:, t] * mask[:, t]
        next_advantage = advantages[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """L^CLIP = −mean_t min(ρ_t A_t, clip(ρ_t, 1−ε, 1+ε) A_t),  ρ_t = π(y_t)/π_old(y_t)

    # (B, T) x4 -> loss (), clip fraction ()  (share of tokens where the clipped term was the min)
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """L^V = ½ mean_t max((V_t − R_t)², (clip(V_t, V_old ± ε_v) − R_t)²); without clip ½ mean (V_t − R_t)²

    # (B, T) x4 -> ()
    """
    loss = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.maximum(loss, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


@dataclass
class FixedKLController:
    value: float

    def update(self, kl: float, n_steps: int) -> None:
        pass


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): e = clip(KL/target − 1, −0.2, 0.2);  β ← β (1 + e · n / horizon).

    KL above target raises β (pull back toward the reference), below lowers it; n is the number
    of samples the KL was measured on.
    """

    value: float
    target: float
    horizon: int

    def update(self, kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon


# ---- the loop -----------------------------------------------------------------------------------


class ValueHead(torch.nn.Module):
    """V(s_t) = w·h_t + b on the policy's last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T)
        return self.summary(hidden.float()).squeeze(-1)


def _value_head(model, policy_path: Path) -> ValueHead:
    from safetensors.torch import load_file

    from training.ml.policy import VALUE_HEAD_FILE

    hidden_size = model.get_output_embeddings().weight.shape[1]
    head = ValueHead(hidden_size)
    stored = Path(policy_path) / VALUE_HEAD_FILE
    if stored.is_file():  # a policy PPO wrote before: continue with its critic
        state = load_file(str(stored))
        if state.get("summary.weight") is not None and state["summary.weight"].shape == head.summary.weight.shape:
            head.load_state_dict(state)
    return head


@dataclass
class _Rollout:
    """One rollout's tensors the PPO epochs train against (all masked to the response tokens)."""

    mask: torch.Tensor
    old_logp: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def _optimise(
    model,
    head: ValueHead,
    optimizer: torch.optim.Optimizer,
    forward: Callable,
    rollouts: list,
    t: _Rollout,
    rng: random.Random,
    config: PPOConfig,
    pad: int,
    device: str,
) -> dict[str, float]:
    """config.ppo_epochs shuffled passes in minibatches over one rollout; the mean loss statistics.

    The minibatch step (clipped surrogate + value loss, clip, AdamW) reads best whole, as trl's.
    """
    from training.ml.logprobs import build_batch

    stats = {"pg_loss": 0.0, "vf_loss": 0.0, "clipfrac": 0.0, "approx_kl": 0.0}
    n_minibatches = 0
    rows = list(range(len(rollouts)))
    for _ in range(config.ppo_epochs):
        rng.shuffle(rows)
        for start in range(0, len(rows), config.mini_batch_size):
            idx = torch.tensor(rows[start : start + config.mini_batch_size], device=device)
            sub = build_batch(
                [rollouts[i].prompt_ids for i in idx.tolist()],
                [rollouts[i].response_ids for i in idx.tolist()],
                pad_token_id=pad,
                device=device,
            )
            width = sub.response_ids.shape[1]  # ≤ the rollout's width: slice the stored tensors to it
            m = t.mask[idx, :width]
            logp, values = forward(model, sub, with_values=True)
            pg, clipfrac = clipped_policy_loss(logp, t.old_logp[idx, :width], t.advantages[idx, :width], m, config.clip)
            vf = value_loss(values, t.old_values[idx, :width], t.returns[idx, :width], m, config.vf_clip)
            loss = pg + config.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                stats["pg_loss"] += pg.item()
                stats["vf_loss"] += vf.item()
                stats["clipfrac"] += clipfrac.item()
                stats["approx_kl"] += 0.5 * masked_mean((logp - t.old_logp[idx, :width]) ** 2, m).item()
            n_minibatches += 1
    return {k: v / max(1, n_minibatches) for k, v in stats.items()}


def _summary(
    curve: list[dict],
    prompt_count: int,
    config: PPOConfig,
    beta_final: float,
    rendered: dict,
    started: float,
    device: str,
) -> dict:
    """The run's metrics: rewards at the start and (last three updates) at the end, KL, β."""
    from training.ml.sampling import truncation_report

    last = curve[-min(3, len(curve)) :]
    return {
        "method": "ppo",
        "prompts": prompt_count,
        "updates": len(curve),
        "rollouts": len(curve) * config.batch_size,
        "mean_reward_first": curve[0]["mean_reward"],
        "mean_reward_last": sum(p["mean_reward"] for p in last) / len(last),
        "kl_last": sum(p["kl"] for p in last) / len(last),
        "beta_final": beta_final,
        "truncation": truncation_report(list(rendered.values())),
        "lora": config.lora is not None,
        "seconds": time.perf_counter() - started,
        "device": device,
    }


def _optimizer(model, head: ValueHead, config: PPOConfig) -> torch.optim.AdamW:
    """AdamW over the policy's trainable weights (lr) and the value head (value_lr or lr)."""
    return torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr},
            {"params": head.parameters(), "lr": config.value_lr or config.lr},
        ],
        eps=1e-5,
    )


def _kl_controller(config: PPOConfig) -> FixedKLController | AdaptiveKLController:
    """Ziegler's adaptive β toward target_kl, or a fixed β."""
    return (
        AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
        if config.adaptive_kl
        else FixedKLController(config.kl_coef)
    )


def train_ppo(
    *,
    policy_path: Path | str,
    reference_path: Path | str,
    prompts: Sequence[PromptLike],
    reward_fn: RewardFn,
    out_dir: Path | str,
    config: PPOConfig = PPOConfig(),
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> UpdateResult:
    """config.max_steps PPO updates of `policy_path` on `prompts` (strings or conversations, unrendered) scored by reward_fn.

    reward_fn(prompts, responses) -> one float per pair (the prompts as given: strings or conversations; decoded responses).
    progress(update, total, metrics) after each update; should_stop() True raises TrainingStopped.
    Each update's rollout → score → advantages stays inline (steps 1-3 of the module docstring in
    order): it makes the tensors the epochs (`_optimise`) and the curve point read.
    """
    from training.ml.logprobs import build_batch, response_logprobs
    from training.ml.policy import VALUE_HEAD_FILE, load_for_update, reference_scope, save_policy
    from training.ml.sampling import generate_ids, to_sample

    prompts = [p for p in prompts if not isinstance(p, str) or p.strip()]
    if not prompts:
        raise ValueError("no prompts")
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    torch.manual_seed(config.seed)
    model, tokenizer, reference, lineage = load_for_update(
        policy_path,
        reference_path,
        device=device,
        lora=config.lora,
        gradient_checkpointing=config.gradient_checkpointing,
        reference_dtype=torch.bfloat16 if use_bf16 else torch.float32,
    )
    head = _value_head(model, Path(policy_path)).to(device)
    model.eval()  # dropout off: the ratio π/π_old must be 1 before the first step
    optimizer, kl_ctl = _optimizer(model, head, config), _kl_controller(config)
    temperature = config.sampler.temperature
    rng = random.Random(config.seed)
    order: list[int] = []
    curve: list[dict] = []
    pad = tokenizer.pad_token_id
    rendered: dict = {}  # prompt index → how it was rendered (truncation report)

    def forward(net, batch, *, with_values: bool):
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            if with_values:
                logp, hidden = response_logprobs(net, batch, temperature=temperature, hidden=True)
                return logp, head(hidden)
            return response_logprobs(net, batch, temperature=temperature)

    for update in range(1, config.max_steps + 1):
        if len(order) < config.batch_size:
            fresh = list(range(len(prompts)))
            rng.shuffle(fresh)
            order += fresh
        chosen = order[: config.batch_size]
        del order[: config.batch_size]
        batch_prompts = [prompts[i] for i in chosen]
        params = replace(config.sampler, seed=config.sampler.seed + 1_000 * config.seed + update)
        rollouts = generate_ids(model, tokenizer, batch_prompts, n=1, params=params)
        rendered.update({chosen[r.prompt_index]: r.prompt for r in rollouts})
        responses = [to_sample(tokenizer, r, params.seed).text for r in rollouts]
        raw_scores = torch.tensor([float(s) for s in reward_fn(batch_prompts, responses)], device=device)
        scores = raw_scores
        if config.normalize_rewards and len(raw_scores) > 1:
            scores = (raw_scores - raw_scores.mean()) / (raw_scores.std() + 1e-6)
        scores = scores * config.reward_scale
        batch = build_batch(
            [r.prompt_ids for r in rollouts], [r.response_ids for r in rollouts], pad_token_id=pad, device=device
        )
        mask = batch.response_mask.float()
        with torch.no_grad():
            old_logp, old_values = forward(model, batch, with_values=True)
            ref_net, ref_context = reference_scope(model, reference)
            with ref_context:
                ref_logp = forward(ref_net, batch, with_values=False)
            old_logp, old_values, ref_logp = old_logp * mask, old_values * mask, ref_logp * mask
            rewards, kl = kl_penalized_rewards(scores, old_logp, ref_logp, mask, kl_ctl.value)
            advantages, returns = gae(rewards, old_values, mask, gamma=config.gamma, lam=config.lam)
            if config.whiten_advantages:
                advantages = masked_whiten(advantages, mask)

        stats = _optimise(
            model,
            head,
            optimizer,
            forward,
            rollouts,
            _Rollout(mask, old_logp, old_values, advantages, returns),
            rng,
            config,
            pad,
            device,
        )

        sequence_kl = kl.sum(-1).mean().item()
        point = {
            "step": update,
            "mean_reward": raw_scores.mean().item(),
            "kl": sequence_kl,
            "objective": raw_scores.mean().item() - kl_ctl.value * sequence_kl,  # J = E[r] − β·KL
            "beta": kl_ctl.value,
            "mean_response_tokens": float(mask.sum(-1).mean().item()),
            **stats,
        }
        kl_ctl.update(sequence_kl, len(rollouts))
        curve.append(point)
        if progress:
            progress(update, config.max_steps, point)
        if should_stop and should_stop():
            raise TrainingStopped(f"stopped at update {update}")

    metrics = _summary(curve, len(prompts), config, kl_ctl.value, rendered, started, device)
    meta = {
        "method": "ppo",
        "parent": str(policy_path),
        "reference": str(reference_path),
        "config": config.as_dict(),
        "metrics": metrics,
        **lineage,
    }
    model.to("cpu")
    path = save_policy(
        model,
        tokenizer,
        Path(out_dir),
        meta=meta,
        extra={VALUE_HEAD_FILE: {k: v for k, v in head.state_dict().items()}},
    )
    return UpdateResult(path=str(path), metrics=metrics, curve=curve)


__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "ValueHead",
    "clipped_policy_loss",
    "gae",
    "kl_penalized_rewards",
    "masked_mean",
    "masked_whiten",
    "train_ppo",
    "value_loss",
]
