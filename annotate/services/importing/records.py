"""Normalised import records: every reader and adapter produces these, one writer stores them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def text_key(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def completion_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


@dataclass
class CompletionRecord:
    text: str
    model: str
    key: str = ""  # derived from model + text when empty
    text_available: bool = True
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = self.key or completion_key(self.model, self.text)


@dataclass
class PromptRecord:
    text: str
    key: str = ""  # a source id such as "vicuna:12"; derived from the text when empty
    category: str = ""
    metadata: dict = field(default_factory=dict)
    completions: dict[str, CompletionRecord] = field(default_factory=dict)  # by completion key
    line: int | None = None  # where it was first seen, for error messages
    messages: list = field(default_factory=list)  # the prompt as conversation turns; empty: the text is one user turn

    def __post_init__(self) -> None:
        self.key = self.key or text_key(self.text)

    def add(self, completion: CompletionRecord) -> CompletionRecord:
        return self.completions.setdefault(completion.key, completion)


@dataclass
class VoteRecord:
    voter: str  # pseudonymous external annotator id, unique per comparison
    shown: list[str]  # completion keys in the order the voter saw them (first = side A)
    choice: str  # a | b | tie | both_bad, relative to `shown`
    aspect: str = "overall"
    strength: int | None = None
    rationale: str = ""


@dataclass
class ComparisonRecord:
    prompt_key: str
    completion_keys: list[str]  # in the order the source gives them
    votes: list[VoteRecord] = field(default_factory=list)


@dataclass
class ImportBatch:
    """Everything one file holds, validated, before anything touches the database."""

    source: str
    format: str
    prompts: dict[str, PromptRecord] = field(default_factory=dict)
    comparisons: list[ComparisonRecord] = field(default_factory=list)
    # True for files of prompts with completions: the pairing strategy builds comparisons.
    build_pairs: bool = False
    skipped: list[str] = field(default_factory=list)  # rows skipped on purpose, with the reason

    def prompt(self, record: PromptRecord) -> PromptRecord:
        return self.prompts.setdefault(record.key, record)
