"""Generic import formats, all-or-nothing behaviour and the import endpoint."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from annotate.models import Comparison, Completion, Prompt, User, Vote
from annotate.services.importing import import_file
from prefloop.core.errors import ImportDataError
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def db_counts():
    return [m.objects.count() for m in (Prompt, Completion, Comparison, Vote)]


def test_prompts_jsonl_builds_all_pairs(tmp_path):
    path = write_jsonl(
        tmp_path / "prompts.jsonl",
        [
            {
                "id": 1,
                "prompt": "Name a prime.",
                "completions": [
                    {"text": "2", "model": "m1"},
                    {"text": "7", "model": "m2"},
                    {"text": "9", "model": "m3"},
                ],
            },
            {
                "id": 2,
                "prompt": "Name a colour.",
                "completions": [{"text": "red", "model": "m1"}, {"text": "blue", "model": "m2"}],
            },
        ],
    )
    project = make_project()
    report = import_file(project=project, path=path)
    assert report.format == "prompts-jsonl"
    assert report.created == {"prompts": 2, "completions": 5, "comparisons": 3 + 1, "votes": 0}


def test_sampled_pairing_is_seeded_and_stable_on_reimport(tmp_path):
    completions = [{"text": f"answer {i}", "model": f"m{i}"} for i in range(6)]
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q?", "completions": completions}])
    project = make_project()
    import_file(project=project, path=path, pairing="sample", pairing_options={"pairs_per_prompt": 4})
    keys = set(Comparison.objects.values_list("key", flat=True))
    assert len(keys) == 4
    import_file(project=project, path=path, pairing="sample", pairing_options={"pairs_per_prompt": 4})
    assert set(Comparison.objects.values_list("key", flat=True)) == keys


def test_kway_pairing_makes_one_comparison_of_all_completions(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "Q?", "completions": [{"text": t, "model": t} for t in "xyz"]}]
    )
    project = make_project()
    import_file(project=project, path=path, pairing="kway")
    comparison = Comparison.objects.get()
    assert comparison.items.count() == 3


def test_prompts_csv_groups_rows_by_prompt_and_keeps_text_byte_exact(tmp_path):
    text = "Zeile eins\r\nline two 🙂 \u200f\u05e9\u05dc\u05d5\u05dd\r\n" + "x" * 1_000_000
    frame = pd.DataFrame(
        [
            {"prompt_id": "q1", "prompt": "Say hi", "model": "a", "completion": text},
            {"prompt_id": "q1", "prompt": "Say hi", "model": "b", "completion": "hi"},
        ]
    )
    path = tmp_path / "prompts.csv"
    frame.to_csv(path, index=False)
    project = make_project()
    report = import_file(project=project, path=path)
    assert report.format == "prompts-csv"
    assert report.created["comparisons"] == 1
    assert Completion.objects.get(model_name="a").text == text


def test_pairs_jsonl_with_winner_becomes_an_imported_vote(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {
                "prompt": "2+2?",
                "response_a": "4",
                "response_b": "5",
                "model_a": "good",
                "model_b": "bad",
                "winner": "a",
                "rationale": "arithmetic",
            },
            {"prompt": "2+3?", "response_a": "5", "response_b": "five", "winner": "tie"},
            {"prompt": "2+4?", "response_a": "6", "response_b": "six"},
        ],
    )
    project = make_project()
    import_file(project=project, path=path)
    assert Comparison.objects.count() == 3
    vote = Vote.objects.get(choice="a")
    assert (vote.winner.model_name, vote.loser.model_name, vote.rationale) == ("good", "bad", "arithmetic")
    assert vote.source == Vote.Source.IMPORTED
    assert Vote.objects.filter(choice="tie").count() == 1


def test_trl_preference_rows_import_as_chosen_over_rejected(tmp_path):
    path = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}])
    project = make_project()
    import_file(project=project, path=path)
    vote = Vote.objects.get()
    assert (vote.winner.text, vote.loser.text) == (" blue.", " green.")


@pytest.mark.parametrize("kind", ["pairs", "prompts"])
def test_parquet_is_read_by_its_columns(tmp_path, kind):
    if kind == "pairs":
        frame = pd.DataFrame([{"prompt": "p", "response_a": "x", "response_b": "y", "winner": "b"}])
    else:
        frame = pd.DataFrame(
            [{"prompt": "p", "completion": "x", "model": "m1"}, {"prompt": "p", "completion": "y", "model": "m2"}]
        )
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    project = make_project()
    import_file(project=project, path=path)
    assert Comparison.objects.count() == 1
    assert Vote.objects.count() == (1 if kind == "pairs" else 0)


def test_a_corrupted_line_deep_in_a_real_file_imports_nothing(real_data, tmp_path):
    lines = gzip.open(real_data / "hh-rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8").read().splitlines()
    lines[1999] = lines[1999][: len(lines[1999]) // 2]  # truncated JSON on line 2000
    lines[2100] = json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": 42})
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = make_project()
    before = db_counts()
    with pytest.raises(ImportDataError) as error:
        import_file(project=project, path=path, format="hh-rlhf")
    message = str(error.value)
    assert "broken.jsonl:2000: invalid JSON" in message
    assert "broken.jsonl:2101: field 'rejected': must be a string, not int" in message
    assert db_counts() == before


def test_a_bad_row_in_csv_names_file_line_and_field(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('prompt,completion,model\n"ok","fine",m\n"multi\nline prompt",,m\n', encoding="utf-8")
    with pytest.raises(ImportDataError, match=r"prompts.csv:3: field 'completion': must not be empty"):
        import_file(project=make_project(), path=path)
    assert db_counts() == [0, 0, 0, 0]


def test_command_exits_non_zero_and_writes_nothing_on_error(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "ok", "completions": [{"text": "a"}, {"text": "b"}]}, {"prompt": ""}]
    )
    make_project(name="target")
    with pytest.raises(CommandError, match=r"p.jsonl:2: field 'prompt'"):
        call_command("import_data", str(path), "--project", "target")
    assert db_counts() == [0, 0, 0, 0]


def test_unknown_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(ImportDataError, match="cannot detect the format"):
        import_file(project=make_project(), path=path)


def test_nul_characters_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a\x00b", "completions": [{"text": "x"}, {"text": "y"}]}])
    with pytest.raises(ImportDataError, match="NUL"):
        import_file(project=make_project(), path=path)


def test_import_endpoint_uses_the_same_service_and_ignores_path_in_file_name(api, tmp_path):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    body = "".join(
        json.dumps(r) + "\n"
        for r in [{"prompt": "Q", "completions": [{"text": "a", "model": "x"}, {"text": "b", "model": "y"}]}]
    )
    upload = io.BytesIO(body.encode())
    upload.name = "../../../etc/passwd.jsonl"
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["created"]["comparisons"] == 1
    assert response.json()["source"] == "passwd.jsonl"


def test_import_endpoint_reports_problems_and_changes_nothing(api):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    upload = io.BytesIO(b'{"prompt": "Q", "completions": []}\n')
    upload.name = "bad.jsonl"
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["problems"] == ["bad.jsonl:1: field 'completions': must be a non-empty list"]
    assert db_counts() == [0, 0, 0, 0]


def test_annotators_cannot_import(api):
    annotator = make_user()
    project = make_project(annotators=[annotator])
    upload = io.BytesIO(b"{}\n")
    upload.name = "x.jsonl"
    response = api(annotator).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 404
