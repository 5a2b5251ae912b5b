"""Decoder reward models (Llama, Qwen2, GPT-2 sequence classifiers) are read at the last real token.

HF's own pooling looks for the last token that is not the pad id, so with pad == eos it skips a
final eos; and left padding shifts positions. sequence_scores takes the index from the attention
mask and positions from the mask too: a row's score does not depend on padding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rewards.ml.score import last_token_index, sequence_scores
from tests.training.chat_models import chat_tokenizer, model_config


def decoder_classifier(arch: str, *, pad_is_eos: bool):
    from transformers import AutoModelForSequenceClassification, GPT2Config

    torch.manual_seed(0)
    tokenizer = chat_tokenizer(["a river is full of water"])
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=64,
            n_embd=32,
            n_layer=1,
            n_head=2,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
    else:
        config = model_config(arch, tokenizer, positions=64)
    config.num_labels = 1
    config.pad_token_id = tokenizer.eos_token_id if pad_is_eos else tokenizer.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config).eval()
    return model, tokenizer, config.pad_token_id


def padded(rows: list[list[int]], pad: int, *, side: str, extra: int = 0):
    width = max(len(r) for r in rows) + extra
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    return ids, mask


def test_last_token_index_finds_the_last_real_token_on_either_side():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 4, 0]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_a_decoder_score_ignores_padding_and_reads_the_last_real_token(arch, side, pad_is_eos):
    model, tokenizer, pad = decoder_classifier(arch, pad_is_eos=pad_is_eos)
    eos = tokenizer.eos_token_id
    words = tokenizer("a river is full of water", add_special_tokens=False)["input_ids"]
    row = words + [eos]  # a scored sequence ends on eos, which is the pad id when pad == eos
    with torch.no_grad():
        alone = sequence_scores(model, *padded([row], pad, side=side)).item()
        beside_short = sequence_scores(model, *padded([row, words[:2]], pad, side=side))[0].item()
        extra = sequence_scores(model, *padded([row], pad, side=side, extra=7)).item()
        changed = sequence_scores(model, *padded([words + [words[0]]], pad, side=side)).item()
        unpadded = model(input_ids=torch.tensor([row])).logits[0, 0].item()
    if not pad_is_eos:  # HF's own reading of an unpadded row agrees (with pad == eos it skips the eos: below)
        assert alone == pytest.approx(unpadded, abs=1e-5)
    assert beside_short == pytest.approx(alone, abs=1e-5)
    assert extra == pytest.approx(alone, abs=1e-5)
    assert abs(changed - alone) > 1e-4  # the last real token is what the score reads


def test_hf_pooling_alone_skips_a_final_eos_when_pad_is_eos():
    """The trap the engine avoids: HF's pooling reads the token before the eos when pad == eos."""
    model, tokenizer, pad = decoder_classifier("llama", pad_is_eos=True)
    words = tokenizer("a river is full of water", add_special_tokens=False)["input_ids"]
    ids, mask = padded([words + [tokenizer.eos_token_id]], pad, side="right", extra=2)
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask).item()
        theirs = model(input_ids=ids, attention_mask=mask).logits[0, 0].item()
    assert abs(ours - theirs) > 1e-4


def test_an_encoder_reward_model_keeps_its_pooled_output(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tokenizer(["a river", "the moon is full of light"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = sequence_scores(model, enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        theirs = model(**enc).logits.squeeze(-1)
    assert torch.allclose(ours, theirs)


def test_a_decoder_reward_model_trains_with_lora_and_saves_a_merged_classifier(tmp_path):
    from rewards.ml.config import RewardTrainConfig
    from rewards.ml.data import PreferencePair
    from rewards.ml.score import RewardScorer
    from rewards.ml.train import train_reward_model
    from tests.training.chat_models import build_chat_model

    base = build_chat_model("llama", tmp_path / "base", texts=["a river is full of water . no"])
    pairs = [
        PreferencePair(
            prompt="what is a river?",
            chosen="a river is full of water.",
            rejected="no.",
            pair_id=str(i),
            group=str(i),
            messages=({"role": "user", "content": "what is a river?"},),
        )
        for i in range(8)
    ]
    config = RewardTrainConfig(
        base_model=str(base),
        max_length=64,
        lr=5e-2,
        batch_size=4,
        epochs=3,
        eval_fraction=0.0,
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    )
    result = train_reward_model(config, pairs, output_dir=tmp_path / "rm")
    folder = Path(result.artifact_path)
    assert (folder / "model.safetensors").is_file() and not (folder / "adapter_config.json").exists()
    scorer = RewardScorer(folder)
    chosen, rejected = scorer.score([list(pairs[0].messages)] * 2, [pairs[0].chosen, pairs[0].rejected])
    assert chosen > rejected  # it learnt the pairs, through the adapters, and the merged weights keep it
    assert config.as_dict()["lora"]["target_modules"] == ("q_proj", "v_proj")


def test_lora_settings_are_bounded_and_name_the_field():
    from rewards.ml.config import LoraSettings, RewardTrainConfig

    for bad, message in [
        ({"r": 0}, "lora.r"),
        ({"r": 1000}, "lora.r"),
        ({"alpha": 0}, "lora.alpha"),
        ({"dropout": 1.0}, "lora.dropout"),
        ({"target_modules": "attention"}, "lora.target_modules"),
        ({"target_modules": []}, "lora.target_modules"),
        ({"rank": 4}, "unknown lora options"),
    ]:
        with pytest.raises(ValueError, match=message):
            RewardTrainConfig(lora=bad)
    assert RewardTrainConfig(lora={"r": 16}).lora == LoraSettings(r=16)
