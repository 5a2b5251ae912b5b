"""A user's own chat model round the loop: tiny random-weight Llama policy and Qwen2 reward model with a
ChatML template, a project system prompt, a decoder reward model retrained on the round's votes,
DPO with LoRA, and the next round sampled from the adapter checkpoint.

Spies on rewards.ml.chat record the exact strings each model was given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from annotate.models import Completion, Prompt
from rewards.ml.chat import plain_text
from tests.training.chat_models import build_chat_model, hh_dialogue
from tests.training.test_loop import loop_env, project_env, start_round, vote_longer  # noqa: F401  (fixtures)
from training.models import Loop, Policy, Round

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SYSTEM = "Be brief."
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def chatml(system: str, user: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def seen(monkeypatch):
    """Every prompt rendering and every (prompt, response) rendering the engine made, in order."""
    import rewards.ml.chat as chat
    import training.ml.dpo as dpo

    record = {"prompts": [], "exchanges": [], "dpo_rows": []}
    render_prompt, render_exchange, dataset = (chat.render_prompt, chat.render_exchange, dpo.preference_dataset)

    def spy_prompt(tokenizer, messages):
        text = render_prompt(tokenizer, messages)
        record["prompts"].append(text)
        return text

    def spy_exchange(tokenizer, messages, response):
        parts = render_exchange(tokenizer, messages, response)
        record["exchanges"].append(parts)
        return parts

    def spy_dataset(*args, **kwargs):
        built, truncated = dataset(*args, **kwargs)
        record["dpo_rows"] += list(built)
        return built, truncated

    monkeypatch.setattr(chat, "render_prompt", spy_prompt)
    monkeypatch.setattr(chat, "render_exchange", spy_exchange)
    monkeypatch.setattr(dpo, "preference_dataset", spy_dataset)
    return record


def chat_params(reward_dir: Path) -> dict:
    return {
        "prompts": 10,
        "k": 2,
        "pairs_per_prompt": 1,
        "max_new_tokens": 8,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 3,
        "reward_model": {
            "base_model": str(reward_dir),
            "max_length": 96,
            "lr": 1e-3,
            "batch_size": 8,
            "epochs": 1,
            "eval_fraction": 0.0,
            "ties": "drop",
        },
        "update": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "max_length": 96, "lora": LORA},
    }


def round_done(project, round_: Round) -> Policy:
    """test_loop.check_round_done without its KL sign check: two small LoRA steps leave π so close to the
    reference that the one-sample Monte-Carlo KL estimate may come out a hair below zero."""
    round_.refresh_from_db()
    assert round_.state == Round.State.DONE, (round_.state, round_.reason)
    assert [e["state"] for e in round_.history] == ["sampling", "labeling", "reward_model", "policy_update", "done"]
    new = round_.new_policy
    assert new.status == Policy.Status.READY and new.parent_id == round_.policy_id
    assert Loop.objects.get(project=project).current_id == new.pk
    assert round_.reward_model.status == "ready" and round_.reward_model.is_current
    for key in (
        "mean_reward",
        "kl_to_reference",
        "win_rate_vs_previous",
        "win_rate_vs_reference",
        "mean_length_tokens",
    ):
        assert round_.metrics["eval"][key] is not None, key
    return new


def test_a_chat_model_goes_round_the_loop_with_lora_dpo_and_a_decoder_reward_model(project_env, loop_env, seen):
    project, researcher, annotator = project_env
    project.system_prompt = SYSTEM
    project.save(update_fields=["system_prompt"])
    # One prompt is a real HH dialogue of over 4,000 tokens: longer than the policy's 512 positions.
    Prompt.objects.filter(project=project, key__startswith="extra-").delete()  # 8 short prompts: every one is drawn
    dialogue = hh_dialogue(min_chars=15_000)
    Prompt.objects.create(
        project=project, key="hh-long", text=plain_text(dialogue), messages=dialogue, metadata={"format": "hh"}
    )
    texts = list(Prompt.objects.filter(project=project).values_list("text", flat=True))
    policy_dir = build_chat_model("llama", loop_env / "models" / "llama-chat", texts=texts)
    reward_dir = build_chat_model("qwen2", loop_env / "models" / "qwen2-rm", texts=texts, seed=1)
    registered = researcher.post(
        f"/api/projects/{project.pk}/policies/",
        {"kind": "base", "model_path": str(policy_dir), "name": "chat"},
        format="json",
    )
    assert registered.status_code == 201, registered.content
    base = Policy.objects.get(pk=registered.json()["id"])

    round1 = start_round(researcher, project, "dpo", chat_params(reward_dir))
    round1.refresh_from_db()
    assert round1.state == Round.State.LABELING, round1.reason
    sampled = (
        Completion.objects.filter(prompt__project=project, round=1)
        .exclude(prompt__key="hh-long")
        .select_related("prompt")
    )
    # The policy saw each prompt in its ChatML template, after the project's system prompt.
    for completion in sampled:
        assert chatml(SYSTEM, completion.prompt.text) in seen["prompts"]

    vote_longer(annotator, project)
    new = round_done(project, round1)
    # The decoder reward model (Qwen2) read (prompt, response) in its own template: trl/RewardBench's convention.
    voted = sampled.filter(text__gt="").first()
    assert (chatml(SYSTEM, voted.prompt.text), f"{voted.text}<|im_end|>\n") in seen["exchanges"]
    assert round1.reward_model.status == "ready"
    # DPO went through trl's conversational format.
    row = seen["dpo_rows"][0]
    assert row["prompt"][0] == {"role": "system", "content": SYSTEM} and row["prompt"][1]["role"] == "user"
    assert row["chosen"][0]["role"] == "assistant" and len(row["chosen"]) == 1
    # The new checkpoint is a LoRA adapter over the base, with its lineage.
    folder = Path(new.artifact_path)
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()
    assert new.data["adapter"] is True and Path(new.data["base"]) == Path(base.artifact_path)
    assert new.metrics["update"]["lora"] is True
    # The long dialogue was cut to fit (positions − max_new_tokens) where the round met it: sampled, or held out for
    # evaluation (all other prompts fit whole); the round records how many prompts and tokens were cut.
    sampling, evaluation = (round1.metrics["sampling"]["truncation"], round1.metrics["truncation"]["eval"])
    long_is_held_out = (
        Prompt.objects.get(key="hh-long", project=project).pk in Loop.objects.get(project=project).eval_prompt_ids
    )
    assert (sampling["truncated_prompts"], evaluation["truncated_prompts"]) == ((0, 1) if long_is_held_out else (1, 0))
    assert sampling["truncated_tokens"] + evaluation["truncated_tokens"] > 3000
    # The merge export writes a full safetensors folder beside the adapter; base policies have nothing to merge.
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = StringIO()
    call_command("merge_policy", project=project.pk, policy_version=new.version, stdout=out)
    merged = Path(out.getvalue().strip())
    assert merged.name == f"v{new.version}-merged" and (merged / "model.safetensors").is_file()
    with pytest.raises(CommandError, match="not a LoRA adapter"):
        call_command("merge_policy", project=project.pk, policy_version=base.version)

    seen["prompts"].clear()
    round2 = start_round(researcher, project, "dpo", chat_params(reward_dir))
    round2.refresh_from_db()
    assert round2.state == Round.State.LABELING and round2.policy_id == new.pk, round2.reason
    mine = Completion.objects.filter(prompt__project=project, round=2, policy_checkpoint_id=new.pk)
    assert mine.exists()  # provenance: round 2's samples point at the adapter checkpoint
    assert all(c.model_name == f"{new.label}@round-2" for c in mine)
    assert chatml(SYSTEM, mine.first().prompt.text) in seen["prompts"]


def test_merge_export_writes_a_full_policy_folder_that_samples_like_the_adapter(tmp_path):
    import torch

    from rewards.ml.config import LoraSettings
    from training.ml.config import SamplerParams
    from training.ml.policy import load_for_update, load_policy, merge_adapter, save_policy
    from training.ml.sampling import TransformersSampler

    base = build_chat_model("qwen2", tmp_path / "base", texts=["what is a river? it is water."])
    model, tokenizer, reference, lineage = load_for_update(base, base, device="cpu", lora=LoraSettings(r=4, alpha=8))
    assert reference is None and lineage == {"adapter": True, "base": str(base)}
    with torch.no_grad():  # move the adapter away from its zero start
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    adapter = save_policy(model, tokenizer, tmp_path / "adapter", meta={"method": "dpo", **lineage})
    merged = merge_adapter(adapter, tmp_path / "merged")
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    params = SamplerParams(temperature=0, max_new_tokens=6)
    prompts = ["what is a river?"]
    from_adapter = TransformersSampler(adapter).generate(prompts, n=1, params=params)[0][0]
    from_merged = TransformersSampler(merged).generate(prompts, n=1, params=params)[0][0]
    assert from_adapter.token_ids == from_merged.token_ids
    merged_model, _ = load_policy(merged, device="cpu")
    base_model, _ = load_policy(base, device="cpu")
    merged_weights, base_weights = (dict(merged_model.named_parameters()), dict(base_model.named_parameters()))
    assert merged_weights.keys() == base_weights.keys()  # a plain model again: no adapter modules left
    changed = [n for n in base_weights if not torch.equal(merged_weights[n], base_weights[n])]
    assert changed and all(
        n.endswith(
            (
                "q_proj.weight",
                "k_proj.weight",
                "v_proj.weight",
                "o_proj.weight",
                "gate_proj.weight",
                "up_proj.weight",
                "down_proj.weight",
            )
        )
        for n in changed
    )


def test_lora_dpo_measures_against_the_base_not_a_copy_of_the_adapter(tmp_path):
    """Continuing an adapter: the reference is the base (adapters disabled), so the implicit rewards
    of the very first step are already non-zero; a copy of the adapter as reference would give 0."""
    from training.ml.config import DPOConfig
    from training.ml.data import PreferenceExample
    from training.ml.dpo import train_dpo

    base = build_chat_model("llama", tmp_path / "base", texts=["what is a river? it is full of water. no."])
    examples = [
        PreferenceExample(
            prompt=[{"role": "user", "content": "what is a river?"}], chosen="it is full of water.", rejected="no."
        )
    ] * 4
    config = DPOConfig(max_steps=3, batch_size=4, lr=5e-2, max_length=64, lora=LORA)
    first = train_dpo(policy_path=base, reference_path=base, examples=examples, out_dir=tmp_path / "v1", config=config)
    assert first.curve[0]["rewards/chosen"] == 0.0  # fresh adapter: policy == base at step 1
    second = train_dpo(
        policy_path=first.path,
        reference_path=base,
        examples=examples,
        out_dir=tmp_path / "v2",
        config=DPOConfig(**{**config.as_dict(), "gradient_checkpointing": True}),
    )
    assert abs(second.curve[0]["rewards/margins"]) > 1e-4
    assert second.curve[0]["rewards/margins"] == pytest.approx(first.curve[-1]["rewards/margins"], rel=0.5)


def test_a_4000_token_hh_dialogue_is_left_truncated_in_sampling_ppo_and_evaluation(tmp_path):
    """Real HH turns joined into one dialogue longer than the model's 512 positions: every step keeps its
    last turns (the one being answered), fits positions − max_new_tokens, and says how much it cut."""
    from rewards.ml.chat import encode_prompt
    from tests.training.chat_models import chat_tokenizer, hh_dialogue
    from training.ml.config import PPOConfig, SamplerParams
    from training.ml.metrics import evaluate_policy
    from training.ml.ppo import train_ppo
    from training.ml.sampling import TransformersSampler

    dialogue = hh_dialogue(min_chars=15_000)
    texts = [t["content"] for t in dialogue]
    policy = build_chat_model("llama", tmp_path / "policy", texts=texts, positions=512)
    tokenizer = chat_tokenizer(texts)
    whole = encode_prompt(tokenizer, dialogue)
    assert whole.original_tokens >= 4000
    short = [{"role": "user", "content": "what is a river?"}]
    params = SamplerParams(temperature=1.0, max_new_tokens=16, seed=0)

    long_sample, short_sample = (
        g[0] for g in TransformersSampler(policy).generate([dialogue, short], n=1, params=params)
    )
    kept = encode_prompt(tokenizer, dialogue, max_tokens=512 - 16)
    assert long_sample.prompt_truncated_tokens == whole.original_tokens - len(kept.ids) > 3000
    assert long_sample.prompt_text == kept.text and kept.text.endswith(
        f"<|im_start|>user\n{dialogue[-1]['content']}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert short_sample.prompt_truncated_tokens == 0

    length = lambda prompts, responses: [len(r) / 10 for r in responses]
    ppo = train_ppo(
        policy_path=policy,
        reference_path=policy,
        prompts=[dialogue, short],
        reward_fn=length,
        out_dir=tmp_path / "ppo",
        config=PPOConfig(max_steps=1, batch_size=2, mini_batch_size=2, ppo_epochs=1, sampler=params),
    )
    assert ppo.metrics["truncation"]["truncated_prompts"] == 1
    assert ppo.metrics["truncation"]["truncated_tokens"] == long_sample.prompt_truncated_tokens

    evaluation = evaluate_policy(
        policy_path=ppo.path, reference_path=policy, prompts=[dialogue, short], reward_fn=length, params=params
    )
    assert evaluation["truncation"] == {
        "prompts": 2,
        "truncated_prompts": 1,
        "dropped_turns": kept.dropped_turns,
        "truncated_tokens": long_sample.prompt_truncated_tokens,
    }


@pytest.mark.parametrize("method", ["ppo", "best_of_n"])
def test_ppo_and_best_of_n_train_lora_adapters_with_the_base_as_reference(tmp_path, method):
    import torch

    from training.ml.best_of_n import train_best_of_n
    from training.ml.config import BestOfNConfig, PPOConfig, SamplerParams
    from training.ml.policy import load_policy
    from training.ml.ppo import train_ppo

    base = build_chat_model("qwen2", tmp_path / "base", texts=["what is a river? it is full of water."])
    prompts = [[{"role": "user", "content": "what is a river?"}], "what is the sea?"]
    length = lambda prompts, responses: [len(r) / 10 for r in responses]
    sampler = SamplerParams(temperature=1.0, max_new_tokens=6, seed=0)
    if method == "ppo":
        config = PPOConfig(
            max_steps=1, batch_size=2, mini_batch_size=2, ppo_epochs=1, lr=1e-2, sampler=sampler, lora=LORA
        )
        result = train_ppo(
            policy_path=base,
            reference_path=base,
            prompts=prompts,
            reward_fn=length,
            out_dir=tmp_path / "out",
            config=config,
        )
        assert result.curve[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # fresh adapter vs base with adapters off
        assert (Path(result.path) / "value_head.safetensors").is_file()
    else:
        config = BestOfNConfig(
            n=2, epochs=1, batch_size=2, lr=1e-2, sampler=sampler, lora=LORA, gradient_checkpointing=True
        )
        result = train_best_of_n(
            policy_path=base, prompts=prompts, reward_fn=length, out_dir=tmp_path / "out", config=config
        )
    folder = Path(result.path)
    assert (folder / "adapter_config.json").is_file() and not (folder / "model.safetensors").exists()
    assert result.metrics["lora"] is True
    trained, _ = load_policy(folder, device="cpu")
    original, _ = load_policy(base, device="cpu")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(trained.named_parameters())[q], dict(original.named_parameters())[q])
