"""Decoder reward models (Llama, Qwen2, GPT-2 sequence classifiers) are read at the last real token.

HF's own pooling looks for the last token that is not the pad id, so with pad == eos it skips a
final eos; and left padding shifts positions. sequence_scores takes the index from the attention
mask and positions from the mask too: a row's score does not depend on padding.
"""
from __future__ import annotations

import pytest
import torch

from rewards.ml.score import last_token_index, sequence_scores
from tests.training.chat_models import chat_tokenizer, model_config


def decoder_classifier(arch: str, *, pad_is_eos: bool):
    from transformers import AutoModelForSequenceClassification, GPT2Config

    torch.manual_seed(0)
    tokenizer = chat_tokenizer(["a river is full of water"])
    if arch == "gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
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
