"""Policy folders, samplers, log-probabilities and evaluate_policy on a tiny SFT'd GPT-2."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import length_reward, prompts

pytestmark = pytest.mark.slow


def test_demo_policy_folder_is_safetensors_with_a_causal_tokenizer(demo_policy):
    from pathlib import Path

    from training.ml.policy import load_policy

    folder = Path(demo_policy.path)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    meta = json.loads((folder / "policy.json").read_text())
    assert meta["format"] == "prefloop.policy/1" and meta["method"] == "demo-sft"
    assert demo_policy.metrics["train_loss_last"] < demo_policy.metrics["train_loss_first"] / 2
    model, tokenizer = load_policy(folder)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("[CLS]", "[SEP]", "[PAD]")
    assert tokenizer.padding_side == "left"
    ids = tokenizer("Question: hi\nAnswer:")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids  # bos only, no BERT [SEP]


def test_load_policy_refuses_pickled_weights(demo_policy, tmp_path):
    import shutil

    from rewards.ml.artifact import UnsafeArtifact
    from training.ml.policy import load_policy

    folder = tmp_path / "pickled"
    shutil.copytree(demo_policy.path, folder)
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(UnsafeArtifact, match="pickle-based weights"):
        load_policy(folder)
    (folder / "pytorch_model.bin").unlink()
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnsafeArtifact, match="no .safetensors weights"):
        load_policy(folder)


def test_samples_are_reproducible_per_seed_in_prompt_order_and_stop_at_eos(demo_policy):
    from training.ml.config import SamplerParams
    from training.ml.sampling import TransformersSampler

    sampler = TransformersSampler(demo_policy.path)
    tokenizer = sampler.tokenizer
    batch = prompts(6)
    params = SamplerParams(max_new_tokens=40, seed=5)
    first = sampler.generate(batch, n=3, params=params)
    assert sampler.generate(batch, n=3, params=params) == first
    assert sampler.generate(batch, n=3, params=SamplerParams(max_new_tokens=40, seed=6)) != first
    assert [len(g) for g in first] == [3] * 6
    flat = [s for g in first for s in g]
    assert any(s.finish_reason == "stop" for s in flat)
    for s in flat:
        assert s.seed == 5 and "[SEP]" not in s.text
        if s.finish_reason == "stop":
            assert s.token_ids[-1] == tokenizer.eos_token_id and s.num_tokens == len(s.token_ids) - 1
        else:
            assert s.num_tokens == len(s.token_ids) == 40


def test_left_padded_batches_give_the_same_greedy_answers_as_one_prompt_at_a_time(demo_policy):
    from training.ml.config import SamplerParams
    from training.ml.sampling import TransformersSampler

    sampler = TransformersSampler(demo_policy.path)
    batch = ["What is a river?", "Why does a violin matter to people who like music?", "Tell me about a clock."]
    greedy = SamplerParams(temperature=0, max_new_tokens=24)
    together = sampler.generate(batch, n=1, params=greedy)
    alone = [sampler.generate([p], n=1, params=greedy)[0] for p in batch]
    assert [g[0].text for g in together] == [g[0].text for g in alone]


def test_any_causal_lm_folder_loads_and_samples(demo_policy, tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.ml.config import SamplerParams
    from training.ml.policy import load_policy
    from training.ml.sampling import make_sampler

    _, tokenizer = load_policy(demo_policy.path)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    llama.save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    sampler = make_sampler(tmp_path / "llama", backend="transformers")
    groups = sampler.generate(["What is a river?"], n=2, params=SamplerParams(max_new_tokens=8))
    assert len(groups[0]) == 2 and all(s.num_tokens <= 8 for s in groups[0])


def test_sequence_logprobs_sum_the_token_logprobs_of_the_response(demo_policy):
    import torch

    from training.ml.data import format_prompt, join_response
    from training.ml.metrics import sequence_logprobs
    from training.ml.policy import load_policy

    model, tokenizer = load_policy(demo_policy.path)
    pairs = [
        ("What is a river?", "a river is full of water."),
        ("Tell me about a very long clock question here?", "it is quiet."),
    ]
    batched = sequence_logprobs(model, tokenizer, [p for p, _ in pairs], [r for _, r in pairs])
    for (prompt, response), value in zip(pairs, batched):
        p = tokenizer(format_prompt(prompt))["input_ids"]
        r = tokenizer(join_response(response), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + r])).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        manual = sum(logp[len(p) - 1 + t, tok].item() for t, tok in enumerate(r))
        assert value == pytest.approx(manual, abs=1e-4)


def test_evaluate_policy_against_itself_has_zero_kl_and_even_win_rates(demo_policy):
    from training.ml.config import SamplerParams
    from training.ml.metrics import evaluate_policy

    metrics = evaluate_policy(
        policy_path=demo_policy.path,
        reference_path=demo_policy.path,
        previous_path=demo_policy.path,
        prompts=prompts(8, seed=4),
        reward_fn=length_reward,
        params=SamplerParams(max_new_tokens=40, seed=3),
        n=2,
    )
    assert metrics["samples"] == 16
    assert metrics["kl_to_reference"] == 0.0 and metrics["kl_to_reference_se"] == 0.0  # exactly: k3 of ρ = 1 is 0
    assert metrics["win_rate_vs_reference"] == 0.5 and metrics["win_rate_vs_previous"] == 0.5  # same draws: all ties
    assert metrics["mean_length_tokens"] > 0 and metrics["mean_length_chars"] > metrics["mean_length_tokens"]
    assert metrics["mean_reward"] == pytest.approx(metrics["reference_mean_reward"])


def test_a_stopped_update_raises_and_writes_no_policy(demo_policy, tmp_path):
    from training.ml.best_of_n import train_best_of_n
    from training.ml.config import BestOfNConfig, SamplerParams
    from training.ml.results import TrainingStopped

    with pytest.raises(TrainingStopped):
        train_best_of_n(
            policy_path=demo_policy.path,
            prompts=prompts(8),
            reward_fn=length_reward,
            out_dir=tmp_path / "bon",
            config=BestOfNConfig(n=2, epochs=3, batch_size=4, sampler=SamplerParams(max_new_tokens=16)),
            should_stop=lambda: True,
        )
    assert not (tmp_path / "bon").exists() and not list(tmp_path.iterdir())
