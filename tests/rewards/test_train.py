"""The training loop on CPU: one forward pass per batch, loss falls, held-out accuracy well above chance."""

from __future__ import annotations

import pytest

from rewards.ml.config import RewardTrainConfig
from rewards.ml.data import split_pairs

pytestmark = pytest.mark.slow


def config(tiny_model_dir, **overrides) -> RewardTrainConfig:
    base = dict(
        base_model=str(tiny_model_dir), max_length=64, lr=5e-3, batch_size=16, max_steps=20, seed=0, eval_every=10
    )
    return RewardTrainConfig(**{**base, **overrides})


def test_a_few_steps_on_an_easy_set_lower_the_loss_and_beat_chance(tiny_model_dir, easy_pairs):
    from rewards.ml.train import train_reward_model

    train, held_out = split_pairs(easy_pairs, eval_fraction=0.2, seed=0)
    seen = []
    result = train_reward_model(config(tiny_model_dir), train, held_out, progress=lambda f, m: seen.append(f))
    losses = [point["loss"] for point in result.curves["train"]]
    assert len(losses) == result.steps == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05
    assert result.metrics["accuracy"] > 0.8
    assert result.metrics["loss"] < 0.69
    assert [p["step"] for p in result.curves["eval"]] == [10, 20]
    assert set(result.metrics["accuracy_by_category"]) == {"even", "odd"}
    assert 0 <= result.metrics["ece"] <= 1 and result.metrics["reward_std"] > 0
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_chosen_and_rejected_share_one_forward_pass(tiny_model_dir, easy_pairs):
    from rewards.ml.backbone import load_base
    from rewards.ml.train import train_reward_model

    cfg = config(tiny_model_dir, max_steps=3, eval_every=None, batch_size=8, packing=False)  # padded rows
    model, tokenizer = load_base(cfg)
    rows = []
    model.register_forward_hook(
        lambda module, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    train_reward_model(cfg, easy_pairs[:48], [], model=model, tokenizer=tokenizer)
    assert rows == [16, 16, 16]  # 3 steps, each one call over 8 chosen + 8 rejected


def test_the_same_seed_gives_the_same_run(tiny_model_dir, easy_pairs):
    from rewards.ml.train import train_reward_model

    cfg = config(tiny_model_dir, max_steps=3, eval_every=None)
    first = train_reward_model(cfg, easy_pairs[:64], easy_pairs[64:96])
    second = train_reward_model(cfg, easy_pairs[:64], easy_pairs[64:96])
    assert [p["loss"] for p in first.curves["train"]] == pytest.approx(
        [p["loss"] for p in second.curves["train"]], rel=1e-5
    )


def test_ties_trained_toward_equal_scores_shrink_their_gap(tiny_model_dir, easy_pairs):
    from dataclasses import replace

    from rewards.ml.train import train_reward_model

    # Stage 1 learns kind > rude; stage 2 is told that kind-vs-rude pairs are ties, and the tie
    # term must pull their rewards together again.
    held_out_ties = [replace(p, tie=True) for p in easy_pairs[:40]]
    first = train_reward_model(config(tiny_model_dir, ties="equal", eval_every=None), easy_pairs[40:220], held_out_ties)
    ties = [replace(p, tie=True) for p in easy_pairs[220:400]]
    second = train_reward_model(
        config(tiny_model_dir, ties="equal", eval_every=None),
        ties,
        held_out_ties,
        model=first.model,
        tokenizer=first.tokenizer,
    )
    assert second.metrics["tie_pairs"] == 40
    assert first.metrics["tie_abs_delta_mean"] > 0.3
    assert second.metrics["tie_abs_delta_mean"] < 0.5 * first.metrics["tie_abs_delta_mean"]
    assert second.metrics["tie_loss"] < first.metrics["tie_loss"]


def test_gradient_accumulation_takes_one_optimiser_step_per_n_batches(tiny_model_dir, easy_pairs):
    from rewards.ml.backbone import load_base
    from rewards.ml.train import train_reward_model

    cfg = config(tiny_model_dir, max_steps=2, grad_accum=2, eval_every=None, batch_size=8)
    model, tokenizer = load_base(cfg)
    calls = []
    model.bert.embeddings.register_forward_hook(
        lambda module, args, out: calls.append(1)
    )  # packed or padded: one a batch
    result = train_reward_model(cfg, easy_pairs[:64], [], model=model, tokenizer=tokenizer)
    assert (
        result.metrics["packed"] is True and len(calls) == 4 and result.steps == 2 and len(result.curves["train"]) == 2
    )
    assert [p["pairs"] for p in result.curves["train"]] == [16, 32]
