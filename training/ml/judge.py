"""Pairwise AI feedback from a causal chat model acting as a judge (MT-bench style, Constitutional-AI principles).

The judge reads the prompt and two answers under a judge prompt and is asked for one letter:
"A" (the first answer is better), "B" (the second) or "C" (a tie). Its verdict is read from the
likelihood of those letter tokens at the first generated position (no free-text parsing): the
next-token distribution is restricted to the three letters and renormalised.

Each pair is judged in both orders (position swap). Order 1 shows (first, second); order 2 shows
(second, first), so its "A" means the second answer. The verdicts of the two orders, mapped back
to the original answers, agree → that verdict (consistent); disagree → a tie, flagged
inconsistent (as MT-bench counts it). Input length is bounded: the rendered judge prompt is
left-truncated with rewards.ml.chat.encode_prompt (the system turn with the instructions stays,
the start of the user turn goes first). No Django here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from rewards.ml.chat import PromptLike, as_messages, encode_prompt, plain_text

DEFAULT_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. Choose the assistant that follows the user's "
    "instructions and answers the user's question better. Avoid any position biases and ensure that "
    "the order in which the responses were presented does not influence your decision. Do not let the "
    "length of the responses influence your evaluation. Be as objective as possible.{principles}\n"
    'Output your final verdict as a single letter: "A" if assistant A is better, "B" if assistant B '
    'is better, and "C" for a tie.'
)
DEFAULT_USER = (
    "[User Question]\n{question}\n\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
PRINCIPLES_HEADER = "\nJudge by these principles:\n"
LETTERS = ("A", "B", "C")  # first answer, second answer, tie
VERDICTS = ("first", "second", "tie")
USER_FIELDS = ("question", "answer_a", "answer_b")


class JudgeError(ValueError):
    """A judge prompt or tokenizer the judge cannot use; the message names the field."""


@dataclass(frozen=True)
class JudgeTemplate:
    system: str = DEFAULT_SYSTEM
    user: str = DEFAULT_USER

    def check(self) -> None:
        for name in USER_FIELDS:
            if "{" + name + "}" not in self.user:
                raise JudgeError(f"judge_user_template must contain {{{name}}}")
        try:
            self.user.format(question="", answer_a="", answer_b="")
            self.system.format(principles="")
        except (KeyError, IndexError, ValueError) as exc:
            raise JudgeError(
                f"judge prompt has an unknown or malformed placeholder ({exc}); "
                "use {question}, {answer_a}, {answer_b} and {principles}, double other braces"
            ) from None

    def version(self, principles: str = "") -> str:
        """A short hash naming this prompt and its principles: two verdicts with the same version used the same text."""
        digest = hashlib.sha256(f"{self.system}\x1f{self.user}\x1f{principles}".encode()).hexdigest()
        return digest[:16]

    def messages(self, prompt: PromptLike, first: str, second: str, principles: str = "") -> list[dict]:
        principles_text = PRINCIPLES_HEADER + principles.strip() if principles.strip() else ""
        question = plain_text(as_messages(prompt)).strip()
        return [
            {"role": "system", "content": self.system.format(principles=principles_text)},
            {"role": "user", "content": self.user.format(question=question, answer_a=first, answer_b=second)},
        ]


@dataclass(frozen=True)
class JudgePair:
    prompt: PromptLike
    first: str  # the answer at position 1 of the comparison (what the verdict "first" refers to)
    second: str


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "first" | "second" | "tie"
    consistent: bool  # both orders gave the same verdict (a tie from disagreeing orders is not)
    order1: tuple[float, float, float]  # P(A), P(B), P(C) with (first, second) shown
    order2: tuple[float, float, float]  # P(A), P(B), P(C) with (second, first) shown
    truncated: bool = False
    probabilities: dict = field(default_factory=dict)  # the two orders averaged: {"first", "second", "tie"}

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "consistent": self.consistent,
            "order1": list(self.order1),
            "order2": list(self.order2),
            "truncated": self.truncated,
            "probabilities": self.probabilities,
        }


def letter_ids(tokenizer, letters: Sequence[str] = LETTERS) -> list[int]:
    """The token id of each verdict letter (its first token alone); distinct letters must map to distinct ids."""
    ids = []
    for letter in letters:
        tokens = tokenizer(letter, add_special_tokens=False, verbose=False)["input_ids"]
        if not tokens:
            raise JudgeError(f"the judge's tokenizer has no token for the verdict letter {letter!r}")
        ids.append(int(tokens[0]))
    if len(set(ids)) != len(ids):
        raise JudgeError(f"the judge's tokenizer maps the verdict letters {list(letters)} to the same token")
    return ids


def order_verdict(probs: Sequence[float]) -> int:
    """0 (A), 1 (B) or 2 (C) from P(A), P(B), P(C): the likeliest letter; an exact A/B tie is C."""
    a, b, c = probs
    if a == b and a >= c:
        return 2
    return max(range(3), key=lambda i: (probs[i], -i))


def combine(order1: Sequence[float], order2: Sequence[float], *, truncated: bool = False) -> Verdict:
    """The verdict of a pair from its two orders' letter probabilities (order 2 shows the answers swapped)."""
    v1 = VERDICTS[order_verdict(order1)]
    v2 = {0: "second", 1: "first", 2: "tie"}[order_verdict(order2)]  # order 2's "A" is the second answer
    consistent = v1 == v2
    averaged = {
        "first": (order1[0] + order2[1]) / 2,
        "second": (order1[1] + order2[0]) / 2,
        "tie": (order1[2] + order2[2]) / 2,
    }
    first, second = (
        (float(order1[0]), float(order1[1]), float(order1[2])),
        (float(order2[0]), float(order2[1]), float(order2[2])),
    )
    return Verdict(
        v1 if consistent else "tie", consistent, first, second, truncated, {k: round(v, 6) for k, v in averaged.items()}
    )


def letter_probabilities(
    model, tokenizer, prompts: Sequence[list[int]], ids: Sequence[int]
) -> list[tuple[float, float, float]]:
    """P(letter) renormalised over the letters, at the first generated position of each (left-padded) prompt."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        input_ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            logits_to_keep=1,
            use_cache=False,
        )
    logits = out.logits[:, -1].float()
    chosen = torch.log_softmax(logits, dim=-1)[:, list(ids)]
    probs = torch.softmax(chosen, dim=-1)  # renormalised over the three letters
    return [(float(row[0]), float(row[1]), float(row[2])) for row in probs.tolist()]


def judge_pairs(
    model,
    tokenizer,
    pairs: Sequence[JudgePair],
    *,
    template: JudgeTemplate | None = None,
    principles: str = "",
    max_tokens: int | None = None,
    batch_size: int = 8,
) -> list[Verdict]:
    """Verdicts of `pairs`, each judged in both orders, `batch_size` prompts per forward pass.

    max_tokens bounds every judge input (left truncation, see the module docstring); None: unbounded.
    """
    template = template or JudgeTemplate()
    template.check()
    if batch_size < 1:
        raise JudgeError(f"batch_size must be positive, got {batch_size}")
    ids = letter_ids(tokenizer)
    rendered = []
    for pair in pairs:
        for first, second in ((pair.first, pair.second), (pair.second, pair.first)):
            rendered.append(
                encode_prompt(
                    tokenizer, template.messages(pair.prompt, first, second, principles), max_tokens=max_tokens
                )
            )
    probs: list[tuple[float, float, float]] = []
    for start in range(0, len(rendered), batch_size):
        probs += letter_probabilities(model, tokenizer, [r.ids for r in rendered[start : start + batch_size]], ids)
    return [
        combine(probs[2 * i], probs[2 * i + 1], truncated=rendered[2 * i].truncated or rendered[2 * i + 1].truncated)
        for i in range(len(pairs))
    ]


__all__ = [
    "DEFAULT_SYSTEM",
    "DEFAULT_USER",
    "LETTERS",
    "JudgeError",
    "JudgePair",
    "JudgeTemplate",
    "Verdict",
    "combine",
    "judge_pairs",
    "letter_ids",
    "letter_probabilities",
    "order_verdict",
]
