"""Fixtures of the policy-engine tests: a small built-in question/answer corpus and a tiny SFT'd demo policy."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download weights
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """One torch thread per test process: under `pytest -n 2` on 2 cores, two threads per worker
    oversubscribe the CPU and tiny models run several times slower (seen here)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


TOPICS = [
    ("a river", "water"),
    ("the moon", "light"),
    ("a forest", "trees"),
    ("a city", "streets"),
    ("the sea", "waves"),
    ("a garden", "flowers"),
    ("a library", "books"),
    ("a kitchen", "food"),
    ("a school", "lessons"),
    ("a farm", "animals"),
    ("a mountain", "snow"),
    ("a desert", "sand"),
    ("a bridge", "steel"),
    ("a train", "tracks"),
    ("a museum", "art"),
    ("a market", "trade"),
    ("a hospital", "care"),
    ("a computer", "code"),
    ("a violin", "music"),
    ("a clock", "time"),
]
QUESTIONS = ["What is {t}?", "Why does {t} matter?", "How would you describe {t}?", "Tell me about {t}."]
SENTENCES = [
    "{T} is full of {w}.",
    "People visit {t} to see the {w}.",
    "It is a calm place with a lot of {w}.",
    "Many people like {t} because of the {w}.",
    "The {w} make {t} feel alive.",
    "In the morning {t} is quiet.",
    "At night you can still notice the {w}.",
    "Children often learn about {w} there.",
]


def corpus(seed: int = 0) -> list[tuple[str, str]]:
    """(question, answer) pairs; answers have 1-4 sentences so the policy learns varied, ending lengths."""
    rng = random.Random(seed)
    pairs = []
    for topic, word in TOPICS:
        for question in QUESTIONS:
            for _ in range(2):
                k = rng.randint(1, 4)
                sentences = rng.sample(SENTENCES, k)
                answer = " ".join(s.format(t=topic, T=topic.capitalize(), w=word) for s in sentences)
                pairs.append((question.format(t=topic), answer))
    return pairs


def prompts(count: int = 16, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(QUESTIONS).format(t=rng.choice(TOPICS)[0]) for _ in range(count)]


TINY_POLICY = dict(
    n_layer=1,
    n_embd=64,
    n_head=2,
    max_length=64,
    steps=80,
    lr=3e-3,
    batch_size=16,
    warmup_steps=5,
    max_sentences=4,
    vocab_size=512,
)


@pytest.fixture(scope="session")
def demo_policy(tmp_path_factory):
    """A 1-layer, 64-wide GPT-2 on the corpus-trimmed MiniLM vocabulary, SFT'd for 80 steps (a few seconds)."""
    from training.ml.config import DemoPolicyConfig
    from training.ml.policy import build_demo_policy

    folder = tmp_path_factory.mktemp("policies") / "demo"
    return build_demo_policy(corpus(), folder, config=DemoPolicyConfig(**TINY_POLICY))


def length_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """r(x, y) = words of y / 10: a scripted "longer is better" preference."""
    return [len(r.split()) / 10 for r in responses]
