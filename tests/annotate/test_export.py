"""Preference export: labels and rules, ties, filters, formats, round trips and the REST endpoint."""

from __future__ import annotations

import json
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.utils import timezone

from annotate.export.aggregate import PairVote, aggregate
from annotate.export.rows import ExportFilters, ExportOptions, hh_messages, iter_preference_rows
from annotate.export.writers import export_dataset
from annotate.models import Completion, User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.importing import import_file
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = pytest.mark.django_db


def cast(annotator, project, choice, *, strength=None, rationale="", aspect_votes=None):
    assignment = next_comparison(annotator=annotator, project=project).assignment
    votes = aspect_votes or [VoteInput(aspect="overall", choice=choice, strength=strength, rationale=rationale)]
    record_vote(annotator=annotator, assignment_id=assignment.pk, votes=votes, idempotency_key=f"{assignment.pk}")
    return assignment


def side_choice(assignment, winner_id):
    """The side letter that makes `winner_id` win, given the random sides of this assignment."""
    return "a" if assignment.shown_order[0] == winner_id else "b"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- aggregation rules --------------------------------------------------------------------------


def votes(*choices):
    return [PairVote(c, f"ann{i}") for i, c in enumerate(choices)]


@pytest.mark.parametrize(
    "choices, rule, label, agreement",
    [
        (("a", "a", "b"), "majority", "a", 2 / 3),
        (("a", "b"), "majority", "tie", 0.0),
        (("a", "tie", "tie"), "majority", "tie", 2 / 3),
        (("a", "tie", "tie"), "bt", "a", 1 / 3),  # a: 1 + 1 half-points, b: 1
        (("both_bad", "both_bad", "tie"), "bt", "both_bad", 2 / 3),
        (("a", "a", "a"), "unanimous", "a", 1.0),
        (("a", "a", "b"), "unanimous", None, 0.0),
    ],
)
def test_aggregation_rules(choices, rule, label, agreement):
    result = aggregate(votes(*choices), rule)
    assert result.label == label
    assert result.agreement == pytest.approx(agreement)


# --- rows from real votes ------------------------------------------------------------------------


@pytest.fixture
def voted_project():
    """Three comparisons voted by three annotators: a clear win, a tie, a split."""
    annotators = [make_user(f"rater{i}") for i in range(3)]
    project = make_project(annotators=annotators, overlap_target=3, strength_scale=3)
    comparisons = make_comparisons(project, 3)
    first = {c.pk: list(c.items.values_list("completion_id", flat=True))[0] for c in comparisons}
    plans = {
        comparisons[0].pk: ["w", "w", "w"],
        comparisons[1].pk: ["tie", "tie", "w"],
        comparisons[2].pk: ["w", "l", "tie"],
    }
    for annotator_index, annotator in enumerate(annotators):
        for _ in comparisons:
            assignment = next_comparison(annotator=annotator, project=project).assignment
            plan = plans[assignment.comparison_id][annotator_index]
            winner = first[assignment.comparison_id]
            choice = {
                "w": side_choice(assignment, winner),
                "l": "b" if side_choice(assignment, winner) == "a" else "a",
            }.get(plan, plan)
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                idempotency_key=f"k{assignment.pk}",
                votes=[
                    VoteInput(
                        aspect="overall",
                        choice=choice,
                        strength=2 if choice in "ab" else None,
                        rationale=f"r{annotator_index}",
                    )
                ],
            )
    return project, comparisons, first


def test_rows_orient_votes_to_the_pair_whatever_side_they_were_shown_on(voted_project):
    project, comparisons, first = voted_project
    rows = {r["comparison_id"]: r for r in iter_preference_rows(project)}
    clear = rows[comparisons[0].pk]
    winner_text = Completion.objects.get(pk=first[comparisons[0].pk]).text
    assert clear["chosen"] == winner_text and clear["agreement"] == 1.0 and clear["votes"] == 3
    assert clear["strength"] == 2.0
    assert sorted(clear["rationales"]) == ["r0", "r1", "r2"]
    assert len(set(clear["annotators"])) == 3 and all(a.startswith("ann-") for a in clear["annotators"])
    assert not any("rater" in a for a in clear["annotators"])
    tie = rows[comparisons[1].pk]
    assert (tie["label"], tie["chosen"], tie["rejected"]) == ("tie", None, None)
    assert tie["provenance_a"]["model"] == "model-x" and tie["provenance_b"]["model"] == "model-y"
    split = rows[comparisons[2].pk]
    assert split["label"] == "tie" and split["votes_a"] == split["votes_b"] == split["votes_tie"] == 1


def test_tie_policies(voted_project):
    project, comparisons, _ = voted_project
    dropped = list(iter_preference_rows(project, options=ExportOptions(ties="drop")))
    assert [r["comparison_id"] for r in dropped] == [comparisons[0].pk]
    both = [r for r in iter_preference_rows(project, options=ExportOptions(ties="both-orders")) if r["label"] == "tie"]
    assert len(both) == 4
    first, second = both[0], both[1]
    assert (first["chosen"], first["rejected"]) == (second["rejected"], second["chosen"])
    assert first["margin"] == 0.0


def test_rule_changes_the_label(voted_project):
    project, comparisons, _ = voted_project
    bt = {r["comparison_id"]: r["label"] for r in iter_preference_rows(project, options=ExportOptions(rule="bt"))}
    assert bt[comparisons[1].pk] in ("a", "b")  # tie, tie, win: 2 half-points + 1 beats 1 half-point
    unanimous = list(iter_preference_rows(project, options=ExportOptions(rule="unanimous")))
    assert [r["comparison_id"] for r in unanimous] == [comparisons[0].pk]


def test_filters_by_agreement_annotators_and_dates(voted_project):
    project, comparisons, _ = voted_project
    high = list(iter_preference_rows(project, ExportFilters(min_agreement=0.9)))
    assert [r["comparison_id"] for r in high] == [comparisons[0].pk]
    one = list(iter_preference_rows(project, ExportFilters(annotators=("rater0",))))
    assert all(r["votes"] == 1 for r in one) and len(one) == 3
    future = list(iter_preference_rows(project, ExportFilters(since=timezone.now() + timedelta(hours=1))))
    assert future == []
    assert list(iter_preference_rows(project, ExportFilters(rounds=(7,)))) == []


def test_aspects_export_separately():
    annotator = make_user()
    project = make_project(annotators=[annotator], aspects=["helpfulness", "harmlessness"], overlap_target=1)
    make_comparisons(project, 1)
    cast(
        annotator,
        project,
        None,
        aspect_votes=[VoteInput(aspect="helpfulness", choice="a"), VoteInput(aspect="harmlessness", choice="both_bad")],
    )
    rows = list(iter_preference_rows(project))
    assert sorted((r["aspect"], r["label"]) for r in rows) == [
        ("harmlessness", "both_bad"),
        ("helpfulness", rows[0]["label"] if rows[0]["aspect"] == "helpfulness" else rows[1]["label"]),
    ]
    only = list(iter_preference_rows(project, ExportFilters(aspect="harmlessness")))
    assert [r["label"] for r in only] == ["both_bad"]


def test_kway_rankings_expand_into_pairs(tmp_path):
    annotator = make_user()
    project = make_project(annotators=[annotator], overlap_target=1)
    path = tmp_path / "k.jsonl"
    path.write_text(
        json.dumps({"prompt": "Q", "completions": [{"text": t, "model": t} for t in ("x", "y", "z")]}) + "\n"
    )
    import_file(project=project, path=path, pairing="kway")
    assignment = next_comparison(annotator=annotator, project=project).assignment
    texts = dict(Completion.objects.values_list("id", "text"))
    order = sorted(assignment.shown_order, key=lambda c: texts[c])  # x > y > z
    ranking = ["abc"[assignment.shown_order.index(c)] for c in order]
    record_vote(
        annotator=annotator,
        assignment_id=assignment.pk,
        idempotency_key="r",
        votes=[VoteInput(aspect="overall", ranking=ranking)],
    )
    rows = list(iter_preference_rows(project))
    assert sorted((r["chosen"], r["rejected"]) for r in rows) == [("x", "y"), ("x", "z"), ("y", "z")]


# --- files ---------------------------------------------------------------------------------------


@pytest.fixture
def tricky_project(tmp_path):
    """Ties, unicode, CRLF and 100 KB responses, imported with their votes."""
    big = ("Long answer with emoji 🙂, RTL \u05e9\u05dc\u05d5\u05dd and CRLF\r\n" * 2000)[:100_000]
    rows = [
        {
            "prompt": "Pick one 🙂",
            "response_a": big,
            "response_b": "short",
            "model_a": "m1",
            "model_b": "m2",
            "winner": "a",
        },
        {"prompt": "Equal?", "response_a": "same-ish", "response_b": "similar", "winner": "tie"},
        {"prompt": "Bad?", "response_a": "wrong", "response_b": "also wrong", "winner": "both_bad"},
        {"prompt": "B wins", "response_a": "meh", "response_b": "great", "winner": "b"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    project = make_project()
    import_file(project=project, path=path)
    return project, big


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_round_trips_text_byte_exact(tricky_project, tmp_path, fmt):
    project, big = tricky_project
    result = export_dataset(
        project=project, out=tmp_path / f"out.{fmt}", format=fmt, options=ExportOptions(ties="label")
    )
    if fmt == "jsonl":
        rows = read_jsonl(result.path)
    elif fmt == "parquet":
        rows = pq.read_table(result.path).to_pylist()
    else:
        import datasets

        rows = list(datasets.load_from_disk(str(result.path)))
    by_prompt = {r["prompt"]: r for r in rows}
    assert by_prompt["Pick one 🙂"]["chosen"] == big
    assert by_prompt["B wins"]["chosen"] == "great"
    assert by_prompt["Equal?"]["label"] == "tie" and by_prompt["Equal?"]["chosen"] is None
    assert by_prompt["Bad?"]["label"] == "both_bad"
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["rows"] == 4 and manifest["aggregation_rule"] == "majority" and manifest["ties"] == "label"
    assert manifest["stats"]["labels"] == {"a": 1, "b": 1, "tie": 1, "both_bad": 1}


def test_the_same_snapshot_exports_byte_identical(tricky_project, tmp_path):
    project, _ = tricky_project
    for fmt in ("jsonl", "parquet"):
        one = export_dataset(project=project, out=tmp_path / f"1.{fmt}", format=fmt)
        two = export_dataset(project=project, out=tmp_path / f"2.{fmt}", format=fmt)
        assert one.sha256 == two.sha256
        assert one.path.read_bytes() == two.path.read_bytes()


def test_datasets_load_the_json_and_parquet_exports(tricky_project, tmp_path):
    import datasets

    project, big = tricky_project
    jsonl = export_dataset(
        project=project, out=tmp_path / "p.jsonl", format="jsonl", options=ExportOptions(ties="drop")
    )
    parquet = export_dataset(
        project=project, out=tmp_path / "p.parquet", format="parquet", options=ExportOptions(ties="drop")
    )
    from_json = datasets.load_dataset("json", data_files=str(jsonl.path), split="train", cache_dir=str(tmp_path / "c1"))
    from_parquet = datasets.load_dataset(
        "parquet", data_files=str(parquet.path), split="train", cache_dir=str(tmp_path / "c2")
    )
    assert from_json.num_rows == from_parquet.num_rows == 2
    assert sorted(from_parquet["chosen"]) == sorted([big, "great"])


def test_raw_export_has_one_row_per_vote_with_the_side_shown(voted_project, tmp_path):
    project, _, _ = voted_project
    result = export_dataset(project=project, out=tmp_path / "votes.jsonl", format="jsonl", raw=True)
    rows = read_jsonl(result.path)
    assert len(rows) == Vote.objects.count() == 9
    for row in rows:
        vote = Vote.objects.get(pk=row["vote_id"])
        assert row["shown"] == vote.shown_order
        if vote.choice in ("a", "b"):
            assert row["winner_position"] == {"a": "left", "b": "right"}[vote.choice]
        assert row["shown_models"] == ["model-x", "model-y"] or row["shown_models"] == ["model-y", "model-x"]


def test_conversational_export_turns_hh_dialogues_into_messages(tmp_path):
    dialogue = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:"
    assert hh_messages(dialogue) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke"},
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": dialogue + " Why did the chicken...", "rejected": dialogue + " No."}) + "\n")
    project = make_project()
    import_file(project=project, path=path, format="hh-rlhf")
    row = next(iter_preference_rows(project, options=ExportOptions(conversational=True)))
    assert row["prompt"][-1] == {"role": "user", "content": "Tell me a joke"}
    assert row["chosen"] == [{"role": "assistant", "content": "Why did the chicken..."}]
    standard = next(iter_preference_rows(project))
    assert standard["prompt"] + standard["chosen"] == dialogue + " Why did the chicken..."


def test_real_prd_export_skips_pairs_without_text(real_data, tmp_path):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    result = export_dataset(project=project, out=tmp_path / "prd.parquet", format="parquet")
    stats = result.metadata["stats"]
    assert stats["votes"] == 7040
    assert stats["skipped_no_text"] > 0
    table = pq.read_table(result.path)
    models = {p["model"] for p in table.column("provenance_a").to_pylist()} | {
        p["model"] for p in table.column("provenance_b").to_pylist()
    }
    assert models == {"bard", "claude", "gpt35", "gpt4", "vicuna-13b"}


def test_export_command_writes_file_and_manifest(voted_project, tmp_path, capsys):
    project, _, _ = voted_project
    out = tmp_path / "cmd.jsonl"
    call_command(
        "export_dataset", "--project", project.name, "--out", str(out), "--ties", "drop", "--min-agreement", "0.5"
    )
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["rows"] == len(read_jsonl(out)) == 1
    assert manifest["filters"]["min_agreement"] == 0.5


def test_export_endpoint_streams_for_researchers_only(voted_project, api):
    project, _, _ = voted_project
    researcher = make_user(role=User.Role.RESEARCHER)
    project.memberships.create(user=researcher, role="researcher")
    response = api(researcher).get(f"/api/projects/{project.pk}/export/?ties=drop&format=jsonl")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert len(body.splitlines()) == int(response["X-Prefloop-Rows"]) == 1
    annotator = project.memberships.filter(role="annotator").first().user
    assert api(annotator).get(f"/api/projects/{project.pk}/export/").status_code == 404
