"""An export taken while annotators vote is one consistent snapshot: its manifest counts and hash
describe the file, it holds exactly the votes up to its recorded bound, and exporting again with
the manifest's filters (after more votes arrived) is byte-identical."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

import pytest
from django.db import connections

from annotate.export.rows import ExportFilters
from annotate.export.writers import export_dataset
from annotate.models import Vote
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
VOTERS = 6


def test_an_export_during_voting_is_a_consistent_snapshot_and_re_exports_byte_identically(tmp_path):
    annotators = [make_user() for _ in range(VOTERS)]
    project = make_project(annotators=annotators, overlap_target=VOTERS)
    make_comparisons(project, 150)
    stop = threading.Event()
    voted = [0] * VOTERS

    def vote(i: int) -> None:
        try:
            while not stop.is_set():
                result = next_comparison(annotator=annotators[i], project=project)
                if result.assignment is None:
                    return
                record_vote(
                    annotator=annotators[i],
                    assignment_id=result.assignment.pk,
                    votes=[VoteInput(choice="ab"[voted[i] % 2])],
                    idempotency_key=str(uuid.uuid4()),
                )
                voted[i] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(VOTERS)]
    for thread in threads:
        thread.start()
    try:
        while sum(voted) < 60:
            threading.Event().wait(0.05)
        exports = {}
        for raw in (True, False):  # one row per vote, then one per pair
            exports[raw] = export_dataset(project=project, out=tmp_path / f"during-{raw}.jsonl", raw=raw)
        votes_during = sum(voted)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert Vote.objects.count() > votes_during >= 60, "voting went on during and after the exports"

    raw = exports[True]
    bound = raw.metadata["filters"]["max_vote_id"]
    lines = raw.path.read_text(encoding="utf-8").splitlines()
    manifest = json.loads(raw.manifest_path.read_text())
    assert manifest["rows"] == len(lines) == Vote.objects.filter(comparison__project=project, id__lte=bound).count()
    assert manifest["sha256"] == hashlib.sha256(raw.path.read_bytes()).hexdigest()
    assert sorted(json.loads(line)["vote_id"] for line in lines) == sorted(
        Vote.objects.filter(comparison__project=project, id__lte=bound).values_list("id", flat=True)
    )

    for is_raw, first in exports.items():
        filters = ExportFilters(max_vote_id=first.metadata["filters"]["max_vote_id"])
        again = export_dataset(project=project, out=tmp_path / f"again-{is_raw}.jsonl", raw=is_raw, filters=filters)
        assert again.path.read_bytes() == first.path.read_bytes()
        assert again.sha256 == first.sha256 and again.rows == first.rows
