"""Packed batches (rewards/ml/packing.py): the same rewards, loss and gradients as padded ones; no pair dropped; seeded."""

from __future__ import annotations

import pytest
import torch

from rewards.ml.config import RewardTrainConfig
from rewards.ml.data import PairCollator, encode_pairs
from rewards.ml.loss import preference_loss
from rewards.ml.packing import PackedPairCollator, packed_sequence_scores, supports_packing
from rewards.ml.score import sequence_scores

pytestmark = pytest.mark.slow


def config(tiny_model_dir, **overrides) -> RewardTrainConfig:
    base = dict(base_model=str(tiny_model_dir), max_length=64, lr=5e-3, batch_size=8, seed=0, packing=True, bucket=True)
    return RewardTrainConfig(**{**base, **overrides})


@pytest.fixture
def model_and_batch(tiny_model_dir, easy_pairs):
    from rewards.ml.backbone import load_base

    model, tokenizer = load_base(config(tiny_model_dir))
    for module in model.modules():  # as the trainer does (disable_dropout): both paths see the same network
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    torch.manual_seed(1)
    with torch.no_grad():  # a random, wide head: the fresh one scores every row nearly alike
        for parameter in [*model.bert.pooler.parameters(), *model.classifier.parameters()]:
            parameter.normal_(0, 1.0)
    # Lengths vary from 10 to 64 tokens (some truncated), chosen and rejected differ: real padding.
    encoded = encode_pairs(tokenizer, easy_pairs[:12], max_length=64)
    assert len({len(p.chosen) for p in encoded} | {len(p.rejected) for p in encoded}) > 4
    return model, tokenizer, encoded


def _loss_and_grads(model, rewards):
    half = rewards.shape[0] // 2
    loss = preference_loss(rewards[:half], rewards[half:])
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_packed_batch_gives_the_padded_batch_s_rewards_loss_and_gradients(model_and_batch):
    model, tokenizer, encoded = model_and_batch
    assert supports_packing(model)
    padded = PairCollator(tokenizer.pad_token_id)(encoded)
    packed = PackedPairCollator()(encoded)
    real = int(padded["attention_mask"].sum())
    assert packed["input_ids"].shape == (1, real) and int(packed["slot_tokens"]) == real < padded["input_ids"].numel()

    model.double().train()  # float64: sums in another order (the packed row is laid out by length) agree to ~1e-12
    reference = sequence_scores(model, padded["input_ids"], padded["attention_mask"], padded["token_type_ids"])
    ref_loss, ref_grads = _loss_and_grads(model, reference)
    rewards = packed_sequence_scores(model, packed)
    loss, grads = _loss_and_grads(model, rewards)

    assert rewards.shape == reference.shape == (24,)
    assert rewards.detach() == pytest.approx(reference.detach(), abs=1e-5)
    assert reference.detach().std() > 0.01  # the rows differ by ~1000× the tolerance
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().item()
        assert (grad - ref_grads[name]).abs().max().item() <= 1e-9 * scale + 1e-15, name
    assert model.config._attn_implementation == "sdpa"  # the packed attention was swapped in for the call only


def test_the_last_layer_runs_past_its_keys_and_values_only_at_each_segment_s_first_token(model_and_batch):
    model, tokenizer, encoded = model_and_batch
    packed = PackedPairCollator()(encoded)
    layers = model.bert.encoder.layer
    rows: dict[str, int] = {}

    def rows_in(name):
        def hook(module, args, out):
            rows[name] = args[0].shape[-2]  # rows this layer multiplies

        return hook

    hooks = [
        module.register_forward_hook(rows_in(name))
        for name, module in [
            ("first layer's feed-forward", layers[0].intermediate.dense),
            ("last layer's keys", layers[-1].attention.self.key),
            ("last layer's queries", layers[-1].attention.self.query),
            ("last layer's feed-forward", layers[-1].intermediate.dense),
        ]
    ]
    try:
        packed_sequence_scores(model, packed)
    finally:
        for hook in hooks:
            hook.remove()
    tokens, segments = packed["input_ids"].shape[1], 2 * len(encoded)
    assert rows == {
        "first layer's feed-forward": tokens,
        "last layer's keys": tokens,
        "last layer's queries": segments,
        "last layer's feed-forward": segments,
    }


def test_a_lora_wrapped_classifier_gets_the_padded_rewards_and_gradients_from_a_packed_batch(model_and_batch):
    from peft import LoraConfig, get_peft_model

    model, tokenizer, encoded = model_and_batch
    model = get_peft_model(
        model.double(), LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    )
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: give the adapters an effect to compare
            torch.nn.init.normal_(parameter, std=0.5)
    assert supports_packing(model)
    padded = PairCollator(tokenizer.pad_token_id)(encoded)
    reference = sequence_scores(model, padded["input_ids"], padded["attention_mask"], padded["token_type_ids"])
    ref_loss, ref_grads = _loss_and_grads(model, reference)
    rewards = packed_sequence_scores(model, PackedPairCollator()(encoded))
    loss, grads = _loss_and_grads(model, rewards)

    assert rewards.detach() == pytest.approx(reference.detach(), abs=1e-5)
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert any("lora_A" in name for name in grads) and set(grads) == set(ref_grads)
    for name, grad in grads.items():
        scale = ref_grads[name].abs().max().item()
        assert (grad - ref_grads[name]).abs().max().item() <= 1e-9 * scale + 1e-15, name


def test_packed_training_follows_the_padded_run_and_drops_no_pair(tiny_model_dir, easy_pairs):
    from rewards.ml.backbone import load_base
    from rewards.ml.train import train_reward_model

    def float64_model():  # float32 runs summing in another order drift apart chaotically at lr 5e-3
        model, tokenizer = load_base(config(tiny_model_dir))
        return {"model": model.double(), "tokenizer": tokenizer}

    train, held_out = easy_pairs[:61], easy_pairs[300:340]  # 61 = 7 full batches of 8 and one of 5
    padded = train_reward_model(config(tiny_model_dir, packing=False, epochs=2), train, held_out, **float64_model())
    packed = train_reward_model(config(tiny_model_dir, epochs=2), train, held_out, **float64_model())

    assert packed.metrics["packed"] is True and padded.metrics["packed"] is False
    assert packed.metrics["bucketed"] is True  # as asked by config(): the two runs see the same batches
    assert packed.metrics["pairs_trained"] == padded.metrics["pairs_trained"] == 2 * 61  # count in == count trained
    assert [p["pairs"] for p in packed.curves["train"]][-1] == 122 and packed.steps == 16
    assert packed.metrics["padding_share"] == 0.0 < padded.metrics["padding_share"]
    assert packed.metrics["train_tokens"] == padded.metrics["train_tokens"]
    assert [p["loss"] for p in packed.curves["train"]] == pytest.approx(
        [p["loss"] for p in padded.curves["train"]], abs=1e-5
    )
    assert packed.metrics["eval_pairs"] == 40 and packed.metrics["accuracy"] == padded.metrics["accuracy"]


def test_the_same_seed_gives_the_same_packed_run(tiny_model_dir, easy_pairs):
    from rewards.ml.train import train_reward_model

    cfg = config(tiny_model_dir, max_steps=4)
    first = train_reward_model(cfg, easy_pairs[:64], easy_pairs[64:96])
    second = train_reward_model(cfg, easy_pairs[:64], easy_pairs[64:96])
    other = train_reward_model(config(tiny_model_dir, max_steps=4, seed=1), easy_pairs[:64], easy_pairs[64:96])
    assert [p["loss"] for p in first.curves["train"]] == [p["loss"] for p in second.curves["train"]]
    assert first.metrics["loss"] == second.metrics["loss"]
    assert [p["loss"] for p in other.curves["train"]] != [p["loss"] for p in first.curves["train"]]


def test_packing_falls_back_to_padded_batches_where_unsupported(tiny_model_dir, easy_pairs):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rewards.ml.backbone import load_base
    from rewards.ml.train import train_reward_model

    _, tokenizer = load_base(config(tiny_model_dir))
    decoder = GPT2ForSequenceClassification(
        GPT2Config(
            vocab_size=tokenizer.vocab_size,
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=128,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    assert not supports_packing(decoder)
    logs: list[str] = []
    result = train_reward_model(
        config(tiny_model_dir, max_steps=2), easy_pairs[:32], [], model=decoder, tokenizer=tokenizer, log=logs.append
    )
    assert result.metrics["packed"] is False and result.metrics["padding_share"] > 0
    assert any("packing: not for this model" in line for line in logs)


def test_a_gradient_checkpointed_run_trains_padded_and_follows_the_plain_run(tiny_model_dir, easy_pairs):
    from rewards.ml.train import train_reward_model

    logs: list[str] = []
    plain = train_reward_model(config(tiny_model_dir, max_steps=4, packing=False), easy_pairs[:32], easy_pairs[300:316])
    checkpointed = train_reward_model(
        config(tiny_model_dir, max_steps=4, gradient_checkpointing=True),
        easy_pairs[:32],
        easy_pairs[300:316],
        log=logs.append,
    )
    assert checkpointed.metrics["packed"] is False and checkpointed.steps == 4
    assert checkpointed.metrics["linear_backend"] == "default"  # its recomputation would run outside the mode
    assert any("gradient checkpointing; batches are padded" in line for line in logs)
    assert [p["loss"] for p in checkpointed.curves["train"]] == pytest.approx(
        [p["loss"] for p in plain.curves["train"]], abs=1e-5
    )


def test_a_bf16_run_computes_the_packed_backbone_in_bf16(tiny_model_dir, easy_pairs):
    # The packed path calls model.bert directly, past the forward accelerate wraps in autocast:
    # without the trainer's own autocast a bf16 run stayed in float32 (and got no faster).
    from rewards.ml.train import _train_step, evaluate, setup_run

    run = setup_run(
        config(tiny_model_dir, bf16=True, max_steps=1),
        easy_pairs[:16],
        easy_pairs[300:308],
        progress=lambda *a: None,
        log=lambda line: None,
    )
    assert run.packed and run.bf16
    seen: list[torch.dtype] = []
    hook = run.model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda module, args, output: seen.append(output.dtype)
    )
    try:
        loss, r_chosen, _ = _train_step(run, next(iter(run.train_loader)))
        metrics = evaluate(run.model, run.eval_loader, run.accelerator, run.eval_encoded)
    finally:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # training step and evaluation alike
    assert r_chosen.dtype == torch.float32 and torch.isfinite(loss)  # rewards and loss come back in float32
    assert metrics["pairs"] == 8


def test_by_default_packed_runs_take_random_batches_and_padded_runs_bucketed_ones(tiny_model_dir, easy_pairs):
    from rewards.ml.train import train_reward_model

    defaults = dict(base_model=str(tiny_model_dir), max_length=64, batch_size=8, max_steps=2)
    packed = train_reward_model(RewardTrainConfig(**defaults), easy_pairs[:32], [])
    padded = train_reward_model(RewardTrainConfig(**defaults, packing=False), easy_pairs[:32], [])
    assert (packed.metrics["packed"], packed.metrics["bucketed"]) == (True, False)
    assert (padded.metrics["packed"], padded.metrics["bucketed"]) == (False, True)
