"""schemathesis over the served OpenAPI schema (/api/schema/): no 5xx and responses that match the schema.

Every operation gets a bounded, derandomized number of generated requests, sent in-process through
the WSGI app with a researcher's token and an annotator's token; path ids are tried both as
generated and as real ids of the project the tokens belong to, so handlers run past their 404s.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given  # noqa: E402  (after the importorskip above)
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from tests.security.conftest import build_world  # noqa: E402

EXAMPLES = 8  # per operation; ~45 operations × 2 tokens × 2 id choices stays well under a minute
CHECKS = [not_a_server_error, response_schema_conformance]


def real_ids(world) -> dict[str, int]:
    ids = {
        "project_id": world.project_a.pk,
        "comparison_id": world.comparison_a.pk,
        "assignment_id": world.assignment_a.pk,
        "reward_model_id": world.reward_model_a.pk,
        "job_id": world.job_a.pk,
    }
    if "policy_a" in world.extra:
        ids.update(policy_id=world.extra["policy_a"].pk, round_id=world.extra["round_a"].pk)
    from prefloop.webhooks.models import Webhook

    ids["webhook_id"] = Webhook.objects.create(
        project=world.project_a, url="https://hooks.example.org/a", events=["job.failed"], secret="whsec_fuzz"
    ).pk
    return ids


@pytest.fixture
def in_process_requests():
    """As Django's test client does: requests served in-process must not close the test's connection."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
def test_no_operation_answers_5xx_or_breaks_its_declared_schema(settings, tmp_path, in_process_requests):
    from rest_framework.authtoken.models import Token

    from prefloop.wsgi import application

    settings.PREFLOOP_JOB_BACKEND = "db"  # queued jobs stay queued: nothing trains during the run
    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "reward-models"
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    world = build_world()
    tokens = {
        label: Token.objects.get_or_create(user=user)[0].key
        for label, user in (("researcher", world.researcher_a), ("annotator", world.annotator_a))
    }
    ids = real_ids(world)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis_settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=operation.as_strategy())
        def run(case):
            for use_real_ids in (False, True):
                if use_real_ids and case.path_parameters:
                    case.path_parameters = {k: ids.get(k, v) for k, v in case.path_parameters.items()}
                elif use_real_ids:
                    continue
                for token in tokens.values():
                    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 — schemathesis' FailureGroup, or an error in a handler
            failures.append(f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert operations > 30, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
