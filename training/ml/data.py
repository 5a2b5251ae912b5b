"""Plain data of the policy engine: the prompt format every step agrees on, and preference examples."""
from __future__ import annotations

from dataclasses import dataclass

PROMPT_TEMPLATE = "Question: {prompt}\nAnswer:"


def format_prompt(prompt: str) -> str:
    """The text the policy is conditioned on; SFT, sampling, DPO, PPO, best-of-N and metrics all use it."""
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())


def join_response(response: str) -> str:
    """A response as it follows the formatted prompt: one leading space (matters to BPE tokenizers)."""
    return " " + response.strip()


@dataclass(frozen=True)
class PreferenceExample:
    """One labelled pair for DPO: raw prompt (unformatted) and the two responses as stored."""

    prompt: str
    chosen: str
    rejected: str
