"""Prompts are conversations: HH dialogues import as their turns, old prompts are backfilled, the project's
system prompt goes first, and plain prompts stay one user turn."""

from __future__ import annotations

import gzip
import json

import pytest

from annotate.models import Prompt
from annotate.selectors import prompt_conversations
from annotate.services.importing import import_file
from annotate.services.importing.adapters import hh_turns
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def test_an_hh_dialogue_splits_into_turns_and_drops_the_empty_last_assistant_turn():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: How are you?\n\nHuman: Still there?\n\nAssistant:"
    assert hh_turns(text) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?\n\nStill there?"},  # one speaker twice: one turn
    ]
    assert hh_turns("What is a river?") == [{"role": "user", "content": "What is a river?"}]


def test_hh_rlhf_imports_each_prompt_as_its_turns_and_keeps_the_text(real_data, tmp_path):
    lines = (
        gzip.open(real_data / "hh-rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:30]
    )
    path = tmp_path / "hh.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = make_project()
    import_file(project=project, path=path, format="hh-rlhf")
    prompts = list(Prompt.objects.filter(project=project))
    assert prompts
    for prompt in prompts:
        assert prompt.text.startswith("\n\nHuman:") and prompt.text.endswith("\n\nAssistant:")
        assert prompt.messages == hh_turns(prompt.text)
        assert prompt.messages[-1]["role"] == "user" and prompt.messages[0]["role"] == "user"
    multi = max(prompts, key=lambda p: len(p.messages))
    assert len(multi.messages) >= 3
    first = json.loads(lines[0])["chosen"]
    assert any(first.startswith(p.text) for p in prompts)


def test_plain_imports_store_one_user_turn(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        json.dumps(
            {
                "prompt": "What is a river?",
                "completions": [{"model": "m1", "text": "Water."}, {"model": "m2", "text": "A stream."}],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    project = make_project()
    import_file(project=project, path=path)
    assert Prompt.objects.get(project=project).messages == [{"role": "user", "content": "What is a river?"}]


def test_the_migration_backfills_messages_from_text():
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("annotate.migrations.0003_h6_prompt_messages").backfill_messages
    project = make_project()
    hh = Prompt.objects.create(
        project=project,
        key="hh",
        text="\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Why?\n\nAssistant:",
        metadata={"format": "hh"},
    )
    plain = Prompt.objects.create(project=project, key="plain", text="Human: not an HH prompt")
    backfill(apps, None)
    hh.refresh_from_db()
    plain.refresh_from_db()
    assert hh.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Why?"},
    ]
    assert plain.messages == [{"role": "user", "content": "Human: not an HH prompt"}]


def test_the_project_system_prompt_goes_first_once():
    project = make_project()
    project.system_prompt = "Be brief."
    project.save()
    bare = Prompt.objects.create(project=project, key="a", text="What is a river?")  # no messages stored: its text
    own = Prompt.objects.create(
        project=project,
        key="b",
        text="x",
        messages=[{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "x"}],
    )
    assert prompt_conversations(project, [bare, own]) == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a river?"}],
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "x"}],
    ]
    project.system_prompt = ""
    assert prompt_conversations(project, [bare]) == [[{"role": "user", "content": "What is a river?"}]]
