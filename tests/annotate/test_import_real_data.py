"""The adapters on the real data sets: counts match ../shared/data/real/README.md."""

from __future__ import annotations

import csv
import gzip
import json

import pytest
from django.core.management import call_command

from annotate.models import Comparison, Completion, Prompt, Vote
from annotate.services.importing import detect_format, import_file
from tests.factories import make_project

pytestmark = pytest.mark.django_db


def test_prd_import_has_every_human_vote_with_ties(real_data):
    project = make_project(overlap_target=3)
    report = import_file(project=project, path=real_data / "PRD" / "vicuna80")

    assert report.format == "prd"
    assert Prompt.objects.filter(project=project).count() == 80
    texts = Completion.objects.filter(prompt__project=project, text_available=True)
    assert texts.count() == 5 * 80
    assert set(texts.values_list("model_name", flat=True)) == {"bard", "claude", "gpt35", "gpt4", "vicuna-13b"}
    votes = Vote.objects.filter(comparison__project=project)
    assert votes.count() == 7040
    # README: score 1: 3,211, score 2: 3,025, score 3 (tie): 804
    assert votes.filter(choice="tie").count() == 804
    assert votes.filter(choice__in=["a", "b"]).count() == 3211 + 3025
    a_wins_by_file_order = sum(1 for v in votes.only("choice") if v.choice == "a")
    assert a_wins_by_file_order == 3211  # side A is the first model of the file name, as shown
    models = set(Completion.objects.filter(prompt__project=project).values_list("model_name", flat=True))
    assert len(models) == 9


def test_prd_votes_keep_which_model_was_shown_first(real_data):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    path = real_data / "PRD/vicuna80/ratings-human/answer_gpt4-vs-answer_bard-human-reviewer_threeclass.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    vote = Vote.objects.get(external_annotator=f"prd:gpt4-vs-bard:{first['question_id']}:1")
    shown = list(Completion.objects.filter(pk__in=vote.shown_order).values_list("pk", "model_name"))
    names = dict(shown)
    assert [names[pk] for pk in vote.shown_order] == ["gpt4", "bard"]
    assert vote.choice == {1: "a", 2: "b", 3: "tie"}[first["score"]]


def test_guanaco_votes_are_kept_for_fits_but_never_handed_out(real_data):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    guanaco = Comparison.objects.filter(project=project, items__completion__model_name__startswith="guanaco").distinct()
    assert guanaco.exists()
    assert not guanaco.filter(is_open=True).exists()
    assert Vote.objects.filter(comparison__in=guanaco).count() > 0


def test_hh_rlhf_pairs_split_into_prompt_and_last_turn_losslessly(real_data):
    path = real_data / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    project = make_project()
    report = import_file(project=project, path=path)
    assert report.format == "hh-rlhf"
    rows = [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]
    assert Vote.objects.filter(comparison__project=project).count() == len(rows) == 2312
    distinct_pairs = {(r["chosen"], r["rejected"]) for r in rows}
    assert Comparison.objects.filter(project=project).count() == len({frozenset(p) for p in distinct_pairs})
    # Every chosen dialogue is exactly prompt + winning turn.
    for vote in Vote.objects.filter(comparison__project=project).select_related("winner__prompt", "loser")[:300]:
        line = int(vote.external_annotator.split(":")[1])
        assert vote.winner.prompt.text + vote.winner.text == rows[line - 1]["chosen"]
        assert vote.winner.prompt.text + vote.loser.text == rows[line - 1]["rejected"]


def test_lfqa_expert_votes_carry_their_justification(real_data):
    path = real_data / "PRD" / "lfqa" / "experts_pairwise_human_preferences.jsonl"
    project = make_project()
    import_file(project=project, path=path)
    votes = Vote.objects.filter(comparison__project=project)
    assert votes.count() == 260
    # README: overall_preference -1 (answer_a): 140, 1 (answer_b): 120
    assert votes.filter(choice="a").count() == 140
    assert votes.filter(choice="b").count() == 120
    assert votes.exclude(rationale="").count() == 260
    assert not Completion.objects.filter(prompt__project=project, text__contains="<br").exists()


def test_copilot_arena_battles_skip_the_one_incomplete_row(real_data):
    path = real_data / "copilot-arena" / "copilot_arena_examples_v1.csv"
    project = make_project()
    report = import_file(project=project, path=path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 113
    votes = Vote.objects.filter(comparison__project=project)
    assert votes.count() == 112
    assert len(report.skipped) == 1 and "only a prefix" in report.skipped[0]
    # README: acceptedIndex 0.0: 92, 1.0: 20
    assert votes.filter(choice="a").count() == 92
    assert votes.filter(choice="b").count() == 20
    assert len(set(Completion.objects.filter(prompt__project=project).values_list("model_name", flat=True))) == 11


@pytest.mark.parametrize(
    "relative, expected",
    [
        ("PRD/vicuna80", "prd"),
        ("hh-rlhf/harmless-base/test.jsonl.gz", "hh-rlhf"),
        ("PRD/lfqa/experts_pairwise_human_preferences.jsonl", "lfqa"),
        ("copilot-arena/copilot_arena_examples_v1.csv", "copilot-arena"),
    ],
)
def test_format_is_detected_from_the_file(real_data, relative, expected):
    assert detect_format(real_data / relative) == expected


def test_reimporting_the_same_file_adds_nothing(real_data):
    project = make_project()
    first = import_file(project=project, path=real_data / "PRD" / "vicuna80")
    counts = [m.objects.count() for m in (Prompt, Completion, Comparison, Vote)]
    second = import_file(project=project, path=real_data / "PRD" / "vicuna80")
    assert [m.objects.count() for m in (Prompt, Completion, Comparison, Vote)] == counts
    assert sum(second.created.values()) == 0
    assert second.existing == first.created


def test_command_imports_relative_to_the_data_dir(real_data, capsys):
    call_command("import_data", "PRD/lfqa/experts_pairwise_human_preferences.jsonl", "--project", "lfqa", "--create")
    report = json.loads(capsys.readouterr().out)
    assert report["created"]["votes"] == 260
