"""The engine's hot statements are really prepared on PostgreSQL (annotate/services/prepared.py):
Django opens psycopg connections with preparation off, and `prepare=True` alone did nothing."""

from __future__ import annotations

import pytest
from django.db import connection

from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def loop_twice() -> None:
    annotator = make_user("prepared-voter")
    project = make_project(name="prepared", annotators=[annotator], overlap_target=1)
    make_comparisons(project, 3)
    for i in range(2):
        assignment = next_comparison(annotator=annotator, project=project.pk).assignment
        record_vote(
            annotator=annotator,
            assignment_id=assignment.pk,
            votes=[VoteInput(aspect="overall", choice="a")],
            idempotency_key=f"prepared-{i}",
        )


def prepared_here() -> dict[str, int]:
    """This session's prepared statements: first words of the text -> times run (generic + custom plans)."""
    with connection.connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return {" ".join(text.split())[:40]: runs for text, runs in cursor.fetchall()}


def test_next_and_vote_statements_are_prepared_once_and_reused():
    connection.close()  # a connection as Django opens it
    loop_twice()
    runs = prepared_here()
    pick = [n for text, n in runs.items() if text.startswith("WITH picked AS")]
    vote_read = [n for text, n in runs.items() if text.startswith("SELECT a.comparison_id, a.state")]
    vote_write = [n for text, n in runs.items() if text.startswith("WITH done AS")]
    assert pick == [2] and vote_read == [2] and vote_write == [2], runs


def test_db_prepared_statements_0_leaves_the_connection_as_django_opened_it(settings):
    settings.PREFLOOP_PREPARED_STATEMENTS = False
    connection.close()
    loop_twice()
    assert prepared_here() == {}
    assert connection.connection.prepare_threshold is None
