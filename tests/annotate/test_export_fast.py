"""PostgreSQL's export path (pair tallies aggregated in SQL, streamed by COPY, columns built by
pyarrow) against the row loop that SQLite runs and that it replaces there: the same files, byte
for byte, on real votes and on every shape of vote; and one snapshot while votes change."""

from __future__ import annotations

import itertools
import json
import threading
import uuid

import numpy as np
import pytest
from django.db import connections

from annotate.export.aggregate import LABELS, label_codes, label_from_counts
from annotate.export.rows import ExportFilters, ExportOptions
from annotate.export.writers import export_dataset
from annotate.models import Completion, Vote
from annotate.services.assignment import next_comparison
from annotate.services.corrections import edit_last_vote
from annotate.services.importing import import_file
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user


@pytest.mark.parametrize("rule", ["majority", "bt", "unanimous"])
def test_label_codes_give_label_from_counts_for_every_count_up_to_five(rule):
    combos = list(itertools.product(range(6), repeat=4))
    codes, agreement = label_codes({label: np.array([c[i] for c in combos]) for i, label in enumerate(LABELS)}, rule)
    for k, counts in enumerate(combos):
        expected = label_from_counts(dict(zip(LABELS, counts)), rule)
        assert (LABELS[codes[k]] if codes[k] >= 0 else None, agreement[k]) == expected, counts


def export_both(project, tmp_path, name, *, fmt, filters=None, options=None):
    filters, options = filters or ExportFilters(), options or ExportOptions()
    results = {}
    for engine in ("sql", "python"):
        results[engine] = export_dataset(
            project=project,
            out=tmp_path / engine / f"{name}.{fmt}",
            format=fmt,
            filters=filters,
            options=options,
            engine=engine,
        )
    return results["sql"], results["python"]


def assert_same_export(fast, reference):
    assert fast.rows == reference.rows and fast.ties_rows == reference.ties_rows
    assert fast.metadata["stats"] == reference.metadata["stats"]
    assert fast.sha256 == reference.sha256
    if fast.path.is_file():
        assert fast.path.read_bytes() == reference.path.read_bytes()
    if fast.ties_path is not None:
        assert fast.ties_path.read_bytes() == reference.ties_path.read_bytes()
        assert fast.metadata["ties_sha256"] == reference.metadata["ties_sha256"]


SETTINGS = [
    ("parquet", ExportFilters(), ExportOptions()),
    ("jsonl", ExportFilters(), ExportOptions(ties="label", rule="bt")),
    ("csv", ExportFilters(min_agreement=0.6), ExportOptions(ties="both-orders")),
    ("parquet", ExportFilters(), ExportOptions(ties="drop", rule="unanimous")),
    ("jsonl", ExportFilters(), ExportOptions(ties="split", conversational=True)),
    ("hf", ExportFilters(), ExportOptions()),
]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_sql_path_writes_the_reference_bytes_on_real_prd_votes(real_data, tmp_path):
    project = make_project()
    import_file(project=project, path=real_data / "PRD" / "vicuna80")
    for n, (fmt, filters, options) in enumerate(SETTINGS):
        fast, reference = export_both(project, tmp_path, f"prd{n}", fmt=fmt, filters=filters, options=options)
        assert_same_export(fast, reference)
    assert reference.metadata["stats"]["votes"] == 7040 and fast.rows > 0
    some = ExportFilters(annotators=tuple(Vote.objects.values_list("external_annotator", flat=True).distinct()[:2]))
    assert_same_export(*export_both(project, tmp_path, "some", fmt="parquet", filters=some))


@pytest.fixture
def every_kind_of_vote(tmp_path):
    """Human votes (strengths, rationales, pseudonymous voters) on two aspects, a tie, both-bad, a
    3-way ranking with a tied group, an HH dialogue, a pair without text and CRLF/emoji texts."""
    annotators = [make_user(f"voter{i}") for i in range(3)]
    project = make_project(
        annotators=annotators, overlap_target=3, strength_scale=3, aspects=["overall", "harmlessness"], allow_tie=True
    )
    make_comparisons(project, 4)
    make_comparisons(project, 2, models=("m1", "m2", "m3"))
    hh = "\n\nHuman: Hi 🙂\r\n\n\nAssistant: Hello!\n\nHuman: A joke?\n\nAssistant:"
    path = tmp_path / "hh.jsonl"
    path.write_text(json.dumps({"chosen": hh + " Why did…", "rejected": hh + " No."}) + "\n", encoding="utf-8")
    import_file(project=project, path=path, format="hh-rlhf")
    Completion.objects.filter(pk=Completion.objects.order_by("pk").values_list("pk", flat=True)[1]).update(
        text_available=False
    )
    plans = itertools.cycle(["a", "b", "tie", "a", "both_bad", "b", "a"])
    for i, annotator in enumerate(annotators):
        while (assignment := next_comparison(annotator=annotator, project=project).assignment) is not None:
            if len(assignment.shown_order) > 2:
                ranking = [["b", "c"], "a"] if i == 0 else ["c", "a", "b"]
                votes = [
                    VoteInput(aspect=a, ranking=ranking, strength=i + 1 if i else None)
                    for a in ("overall", "harmlessness")
                ]
            else:
                choice = next(plans)
                votes = [
                    VoteInput(
                        aspect="overall",
                        choice=choice,
                        strength=(i % 3) + 1 if choice in "ab" else None,
                        rationale=f"why {i} 🙂" * (i != 1),
                    ),
                    VoteInput(aspect="harmlessness", choice="both_bad" if i else next(plans)),
                ]
            record_vote(annotator=annotator, assignment_id=assignment.pk, votes=votes, idempotency_key=uuid.uuid4().hex)
    return project


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_sql_path_writes_the_reference_bytes_for_every_kind_of_vote(every_kind_of_vote, tmp_path):
    project = every_kind_of_vote
    assert Vote.objects.filter(choice="ranked").exists() and Vote.objects.exclude(ranking_ties=None).exists()
    for n, (fmt, filters, options) in enumerate(SETTINGS):
        assert_same_export(*export_both(project, tmp_path, f"all{n}", fmt=fmt, filters=filters, options=options))
    for n, filters in enumerate(
        [
            ExportFilters(annotators=("voter0", "voter2")),
            ExportFilters(aspect="harmlessness"),
            ExportFilters(rounds=(0,)),
            ExportFilters(rounds=(3,)),
            ExportFilters(max_vote_id=1),
        ]
    ):
        fast, reference = export_both(
            project, tmp_path, f"filtered{n}", fmt="jsonl", filters=filters, options=ExportOptions(ties="label")
        )
        assert_same_export(fast, reference)
    fast, _ = export_both(project, tmp_path, "counts", fmt="jsonl", options=ExportOptions(ties="label"))
    stats = fast.metadata["stats"]
    assert stats["skipped_no_text"] > 0 and stats["labels"]["tie"] > 0 and stats["labels"]["both_bad"] > 0
    assert any(
        r["votes"] == 3 and len(r["rationales"]) == 2 for r in map(json.loads, fast.path.read_text().splitlines())
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sql_path_reads_one_snapshot_while_a_vote_and_an_edit_commit(tmp_path, monkeypatch):
    """A vote and an edit of an earlier vote commit after the export's snapshot is taken but before
    its COPY runs: the file is the one exported before them, byte for byte."""
    from annotate.export import tally_sql

    annotators = [make_user() for _ in range(2)]
    project = make_project(annotators=annotators, overlap_target=2)
    make_comparisons(project, 3)
    for annotator in annotators:
        for _ in range(2):
            assignment = next_comparison(annotator=annotator, project=project).assignment
            record_vote(
                annotator=annotator,
                assignment_id=assignment.pk,
                votes=[VoteInput(choice="a")],
                idempotency_key=uuid.uuid4().hex,
            )
    before = export_dataset(project=project, out=tmp_path / "before.jsonl", options=ExportOptions(ties="label"))

    def change_votes_elsewhere() -> None:
        try:
            edit_last_vote(annotator=annotators[0], assignment_id=assignment_id, votes=[VoteInput(choice="b")])
            lease = next_comparison(annotator=annotators[0], project=project).assignment
            record_vote(
                annotator=annotators[0], assignment_id=lease.pk, votes=[VoteInput(choice="b")], idempotency_key="late"
            )
        finally:
            connections.close_all()

    assignment_id = Vote.objects.filter(annotator=annotators[0]).latest("id").assignment_id
    statement = tally_sql.tally_statement

    def statement_then_votes(*args, **kwargs):
        result = statement(*args, **kwargs)  # the snapshot is taken: it counted the votes
        voter = threading.Thread(target=change_votes_elsewhere)
        voter.start()
        voter.join()
        return result

    monkeypatch.setattr(tally_sql, "tally_statement", statement_then_votes)
    during = export_dataset(
        project=project, out=tmp_path / "during.jsonl", options=ExportOptions(ties="label"), engine="sql"
    )
    monkeypatch.undo()
    assert Vote.objects.filter(idempotency_key="late").exists(), "the vote committed while the export ran"
    assert during.path.read_bytes() == before.path.read_bytes() and during.metadata["stats"] == before.metadata["stats"]
    after = export_dataset(
        project=project, out=tmp_path / "after.jsonl", options=ExportOptions(ties="label"), engine="sql"
    )
    assert after.path.read_bytes() != before.path.read_bytes() and after.metadata["stats"]["votes"] == 5
