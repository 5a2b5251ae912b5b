"""Fixtures of the reward-model tests: a tiny BERT with MiniLM's tokenizer, an easy pair set, model folders."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may download weights
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GOOD = ("great", "helpful", "clear", "kind", "correct")
BAD = ("rude", "wrong", "useless", "awful", "false")
FILLER = ("the", "answer", "is", "that", "we", "can", "see", "it", "here", "now")


def easy_texts(rng: random.Random, words) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(5)) + " " + " ".join(rng.choice(words) for _ in range(2))


@pytest.fixture
def easy_pairs():
    """400 pairs a tiny model learns in a few steps: chosen answers use kind words, rejected ones rude words."""
    from rewards.ml.data import PreferencePair

    rng = random.Random(0)
    return [
        PreferencePair(
            prompt=f"question {i}: " + " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 60))),
            chosen=easy_texts(rng, GOOD),
            rejected=easy_texts(rng, BAD),
            group=str(i),
            category="even" if i % 2 == 0 else "odd",
        )
        for i in range(400)
    ]


@pytest.fixture(autouse=True)
def _model_roots(settings, tmp_path_factory):
    # A base_model folder must sit inside PREFLOOP_MODEL_ROOTS (rewards.services.check_base_model);
    # the tiny model lives under pytest's temporary root.
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path_factory.getbasetemp()]


@pytest.fixture
def model_dir(settings, tmp_path):
    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "reward-models"
    settings.PREFLOOP_JOB_DIR = tmp_path / "jobs"
    settings.PREFLOOP_JOB_BACKEND = "db"
    return settings.PREFLOOP_REWARD_MODEL_DIR


def vote_imported(comparison, *, winner_position: int = 0, voter: str = "ext-1", strength=None, choice=None):
    """One imported vote on a two-way comparison; the completion at winner_position wins."""
    from annotate.models import Vote

    ids = list(comparison.items.order_by("position").values_list("completion_id", flat=True))
    winner, loser = ids[winner_position], ids[1 - winner_position]
    tie = choice in ("tie", "both_bad")
    return Vote.objects.create(
        comparison=comparison,
        source=Vote.Source.IMPORTED,
        external_annotator=voter,
        shown_order=ids,
        choice=choice or ("a" if winner_position == 0 else "b"),
        strength=strength,
        winner_id=None if tie else winner,
        loser_id=None if tie else loser,
    )


@pytest.fixture
def voted_project(db):
    """A project (researcher `res`, annotator `ann`) with 40 easy comparisons, each with one imported vote."""
    from annotate.models import Completion, User
    from tests.factories import make_comparisons, make_project, make_user

    researcher = make_user("res", role=User.Role.RESEARCHER)
    annotator = make_user("ann")
    project = make_project(name="rm-project", researchers=[researcher], annotators=[annotator], overlap_target=1)
    rng = random.Random(3)
    for comparison in make_comparisons(project, 40):
        first, second = comparison.items.order_by("position")
        Completion.objects.filter(pk=first.completion_id).update(text=easy_texts(rng, GOOD))
        Completion.objects.filter(pk=second.completion_id).update(text=easy_texts(rng, BAD))
        vote_imported(comparison, winner_position=0)
    return project, researcher, annotator


def tiny_options(tiny_model_dir, **overrides) -> dict:
    return {
        "base_model": str(tiny_model_dir),
        "max_length": 64,
        "lr": 5e-3,
        "batch_size": 8,
        "max_steps": 4,
        "eval_fraction": 0.25,
        **overrides,
    }
