"""Plain data of the policy engine: the plain prompt format, and preference examples.

How a prompt is rendered for a model (chat template or this plain format) and truncated lives
in rewards.ml.chat, shared with the reward model.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewards.ml.chat import PROMPT_TEMPLATE, PromptLike


def format_prompt(prompt: str) -> str:
    """The plain text a policy without a chat template is conditioned on (rewards.ml.chat.render_prompt)."""
    return PROMPT_TEMPLATE.format(prompt=prompt.strip())


def join_response(response: str) -> str:
    """A response as it follows the formatted prompt: one leading space (matters to BPE tokenizers)."""
    return " " + response.strip()


@dataclass(frozen=True)
class PreferenceExample:
    """One labelled pair for DPO: the prompt (a string or {role, content} turns, unrendered) and the two responses."""

    prompt: PromptLike
    chosen: str
    rejected: str
