"""Conversations and how a model sees them: chat templates or plain text, and left truncation.

A prompt is a conversation: a list of {"role", "content"} turns (system, user, assistant); a
plain string is one user turn. Every engine step renders it with the consuming model's own
tokenizer: `apply_chat_template(..., add_generation_prompt=True)` when the tokenizer has a chat
template, the plain "Question: ...\\nAnswer:" format otherwise (what the demo policy learnt).
Too-long prompts lose their beginning: whole turns first (the last turns are kept), then tokens
from the start of the first kept turn, so the conversation still ends on the turn being answered.
No torch and no Django here: the sampler, the updates, the metrics and the reward model all call it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROMPT_TEMPLATE = "Question: {prompt}\nAnswer:"
ROLES = ("system", "user", "assistant")
HH_ROLES = {"user": "Human", "assistant": "Assistant"}

Messages = list[dict]
PromptLike = str | Sequence[Mapping]


def as_messages(prompt: PromptLike, *, system: str = "") -> Messages:
    """A conversation from a plain string (one user turn) or a list of turns; `system` goes first if given.

    Turns are checked: a role out of ROLES or a non-string content is an error naming the turn.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = []
        for i, turn in enumerate(prompt):
            role, content = turn.get("role"), turn.get("content")
            if role not in ROLES:
                raise ValueError(f"messages[{i}].role must be one of {list(ROLES)}, got {role!r}")
            if not isinstance(content, str):
                raise ValueError(f"messages[{i}].content must be a string")
            messages.append({"role": role, "content": content})
        if not messages:
            raise ValueError("messages must hold at least one turn")
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    return messages


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def plain_text(messages: Sequence[Mapping]) -> str:
    """The conversation as plain text: a lone user turn is its content; longer dialogues read as HH's
    "Human: ...\\n\\nAssistant: ..." ending on "Assistant:" (exactly how HH prompts are stored)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    head = "\n\n".join(s for s in system if s.strip())
    if len(turns) == 1 and turns[0]["role"] == "user":
        body = turns[0]["content"]
    else:
        body = "\n\n".join(f"{HH_ROLES[m['role']]}: {m['content'].strip()}" for m in turns) + "\n\nAssistant:"
    return f"{head}\n\n{body}" if head else body


def template_messages(tokenizer, messages: Sequence[Mapping]) -> Messages:
    """The turns as the tokenizer's chat template accepts them: a template that refuses a system turn
    (Mistral's and Gemma's raise) gets the system text prepended to the first user turn instead."""
    turns: Messages = [dict(m) for m in messages]
    if len(turns) < 2 or turns[0]["role"] != "system":
        return turns
    try:
        tokenizer.apply_chat_template(turns, tokenize=False)
        return turns
    except Exception:  # noqa: BLE001 — jinja2's TemplateError or the template's own raise_exception
        system, first, rest = turns[0], turns[1], turns[2:]
        return [{"role": first["role"], "content": f"{system['content']}\n\n{first['content']}"}, *rest]


def apply_template(tokenizer, messages: Sequence[Mapping], *, add_generation_prompt: bool) -> str:
    """tokenizer.apply_chat_template as text, on template_messages."""
    return tokenizer.apply_chat_template(
        template_messages(tokenizer, messages), tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_prompt(tokenizer, messages: Sequence[Mapping]) -> str:
    """The text a policy is conditioned on (its chat template with the generation prompt, or plain)."""
    if has_chat_template(tokenizer):
        return apply_template(tokenizer, messages, add_generation_prompt=True)
    return PROMPT_TEMPLATE.format(prompt=plain_text(messages).strip())


def prompt_token_ids(tokenizer, text: str) -> list[int]:
    """Ids of a rendered prompt: a chat template writes its own special tokens; plain text gets the tokenizer's."""
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer), verbose=False)["input_ids"]


def render_exchange(tokenizer, messages: Sequence[Mapping], response: str) -> tuple[str, str]:
    """(prompt part, response part) of conversation + assistant reply under the tokenizer's chat template.

    The prompt part is the template with the generation prompt; the response part is the rest of
    the rendered exchange (the reply and the template's end-of-turn markers), as trl's
    RewardTrainer and RewardBench see a pair.
    """
    messages = list(messages)
    full = apply_template(
        tokenizer, messages + [{"role": "assistant", "content": response}], add_generation_prompt=False
    )
    for generation_prompt in (True, False):
        prompt = apply_template(tokenizer, messages, add_generation_prompt=generation_prompt)
        if full.startswith(prompt):
            return prompt, full[len(prompt) :]
    raise ValueError("the chat template renders the conversation differently once a reply is added")


@dataclass(frozen=True)
class RenderedPrompt:
    messages: Messages  # the (possibly truncated) conversation that was rendered
    text: str
    ids: list[int]
    original_tokens: int
    dropped_turns: int = 0

    @property
    def truncated_tokens(self) -> int:
        return self.original_tokens - len(self.ids)

    @property
    def truncated(self) -> bool:
        return self.truncated_tokens > 0 or self.dropped_turns > 0


def _render(tokenizer, messages: Messages) -> tuple[str, list[int]]:
    text = render_prompt(tokenizer, messages)
    return text, prompt_token_ids(tokenizer, text)


def encode_prompt(tokenizer, prompt: PromptLike, *, max_tokens: int | None = None) -> RenderedPrompt:
    """The rendered prompt and its ids, left-truncated to at most `max_tokens` tokens.

    Earliest turns go first (a leading system turn stays; the kept part starts with a user turn
    when it can), then tokens from the start of the first kept turn's content; a system prompt
    that alone overflows is cut in token space as a last resort.
    """
    messages = as_messages(prompt)
    text, ids = _render(tokenizer, messages)
    original = len(ids)
    if max_tokens is None or len(ids) <= max_tokens:
        return RenderedPrompt(messages, text, ids, original)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    dropped = _first_fitting_start(tokenizer, system, turns, max_tokens)
    turns = turns[dropped:]
    text, ids = _render(tokenizer, system + turns)
    if len(ids) > max_tokens and turns:
        turns = [_cut_left(tokenizer, system, turns, max_tokens, len(ids)), *turns[1:]]
        text, ids = _render(tokenizer, system + turns)
    if len(ids) > max_tokens:  # the system prompt alone is too long
        ids = ids[len(ids) - max_tokens :]
        text = tokenizer.decode(ids)
    return RenderedPrompt(system + turns, text, ids, original, dropped)


def _first_fitting_start(tokenizer, system: Messages, turns: Messages, max_tokens: int) -> int:
    """The fewest leading turns to drop so the rest fits: a binary search over the starts at a user
    turn (the last turn when none fits), since fewer turns never render longer."""
    starts = [i for i, turn in enumerate(turns) if turn["role"] == "user" and i > 0] or [len(turns) - 1]
    if starts[-1] != len(turns) - 1 and turns[-1]["role"] != "user":
        starts.append(len(turns) - 1)
    low, high = 0, len(starts) - 1  # invariant: starts[high] is the answer if any start fits
    if len(_render(tokenizer, system + turns[starts[high] :])[1]) > max_tokens:
        return starts[high]
    while low < high:
        middle = (low + high) // 2
        if len(_render(tokenizer, system + turns[starts[middle] :])[1]) <= max_tokens:
            high = middle
        else:
            low = middle + 1
    return starts[high]


def _cut_left(tokenizer, system: Messages, turns: Messages, max_tokens: int, rendered: int) -> dict:
    """The first kept turn with the start of its content cut so the rendering fits (decode/encode may
    shift a token or two at the cut, so the cut grows until it fits)."""
    first = turns[0]
    content_ids = tokenizer(first["content"], add_special_tokens=False, verbose=False)["input_ids"]
    overflow = rendered - max_tokens
    while True:
        keep = max(0, len(content_ids) - overflow)
        cut = {
            "role": first["role"],
            "content": tokenizer.decode(content_ids[len(content_ids) - keep :]) if keep else "",
        }
        _, ids = _render(tokenizer, system + [cut, *turns[1:]])
        if len(ids) <= max_tokens or keep == 0:
            return cut
        overflow += len(ids) - max_tokens


def model_positions(config, tokenizer=None) -> int | None:
    """How many positions a model attends over (max_position_embeddings / n_positions), None if unknown."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prompt_budget(config, max_new_tokens: int) -> int | None:
    """Prompt tokens that fit beside max_new_tokens generated ones: model positions − max_new_tokens."""
    positions = model_positions(config)
    if positions is None:
        return None
    budget = positions - max_new_tokens
    if budget < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt in {positions} positions")
    return budget


__all__ = [
    "Messages",
    "PROMPT_TEMPLATE",
    "PromptLike",
    "RenderedPrompt",
    "apply_template",
    "as_messages",
    "template_messages",
    "encode_prompt",
    "has_chat_template",
    "model_positions",
    "plain_text",
    "prompt_budget",
    "prompt_token_ids",
    "render_exchange",
    "render_prompt",
]
