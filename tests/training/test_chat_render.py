"""rewards.ml.chat: how a conversation is rendered for a model and left-truncated (no Django, no torch)."""

from __future__ import annotations

import pytest

from rewards.ml.chat import as_messages, encode_prompt, plain_text, prompt_budget, render_prompt
from tests.training.chat_models import chat_tokenizer
from training.ml.data import format_prompt

DIALOGUE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "what is a river?"},
    {"role": "assistant", "content": "it is water that flows to the sea."},
    {"role": "user", "content": "and the sea?"},
]


@pytest.fixture(scope="module")
def tokenizer():
    return chat_tokenizer([m["content"] for m in DIALOGUE])


def test_a_plain_prompt_is_one_user_turn_and_renders_as_before_without_a_template():
    assert as_messages("What is a river?") == [{"role": "user", "content": "What is a river?"}]
    assert render_prompt(None, as_messages("  What is a river? ")) == format_prompt("What is a river?")
    hh = "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Why?\n\nAssistant:"
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Why?"},
    ]
    assert render_prompt(None, turns) == format_prompt(hh)  # an HH dialogue reads exactly as its stored text
    assert (
        plain_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == "Be brief.\n\nHi"
    )


@pytest.mark.parametrize(
    "bad,message",
    [
        ([{"role": "bot", "content": "x"}], r"messages\[0\].role"),
        ([{"role": "user", "content": 3}], r"messages\[0\].content"),
        ([], "at least one"),
    ],
)
def test_bad_turns_are_refused_naming_the_turn(bad, message):
    with pytest.raises(ValueError, match=message):
        as_messages(bad)


def test_a_chat_template_renders_chatml_with_the_generation_prompt(tokenizer):
    assert render_prompt(tokenizer, DIALOGUE) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nwhat is a river?<|im_end|>\n"
        "<|im_start|>assistant\nit is water that flows to the sea.<|im_end|>\n<|im_start|>user\nand the sea?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = encode_prompt(tokenizer, DIALOGUE).ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # the template's tokens, no [CLS] added


def test_left_truncation_drops_the_earliest_turns_then_tokens_and_keeps_the_system_turn(tokenizer):
    whole = encode_prompt(tokenizer, DIALOGUE)
    last_turn = encode_prompt(tokenizer, [DIALOGUE[0], DIALOGUE[3]])
    fitted = encode_prompt(tokenizer, DIALOGUE, max_tokens=len(last_turn.ids))
    assert fitted.messages == [DIALOGUE[0], DIALOGUE[3]] and fitted.dropped_turns == 2
    assert fitted.ids == last_turn.ids and fitted.truncated_tokens == len(whole.ids) - len(last_turn.ids)
    tight = encode_prompt(tokenizer, DIALOGUE, max_tokens=len(last_turn.ids) - 2)
    assert len(tight.ids) <= len(last_turn.ids) - 2 and tight.messages[0] == DIALOGUE[0]
    assert tight.text.endswith("sea?<|im_end|>\n<|im_start|>assistant\n")  # the turn being answered keeps its end
    assert encode_prompt(tokenizer, DIALOGUE, max_tokens=10_000).truncated is False


def test_the_budget_is_positions_minus_new_tokens():
    class Config:
        max_position_embeddings = 512

    assert prompt_budget(Config(), 16) == 496
    with pytest.raises(ValueError, match="max_new_tokens"):
        prompt_budget(Config(), 512)
    assert prompt_budget(object(), 16) is None


def test_a_template_that_refuses_system_turns_gets_the_system_text_in_the_first_user_turn():
    strict = chat_tokenizer(["what is a river?"])
    strict.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    assert render_prompt(strict, DIALOGUE[:2]) == "[user] Be brief.\n\nwhat is a river?\n[assistant] "
