"""Job errors shown to researchers are a message, never a traceback with server paths.

The traceback stays in the server log (logger `prefloop.jobs.services`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.conf import settings

from annotate.models import User
from prefloop.jobs.models import Job
from prefloop.jobs.registry import JOB_KINDS, register_job_kind
from prefloop.jobs.services import run_job
from rewards.models import RewardModel
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

MISSING = Path(settings.BASE_DIR) / "var" / "no-such-folder" / "weights.safetensors"


def _open_weights(path: Path) -> bytes:
    return path.read_bytes()


def leaky_handler(job, ctx):
    ctx.progress(0.25, "loading weights")
    return _open_weights(MISSING)  # FileNotFoundError naming a server path, three frames deep


@pytest.fixture
def leaky_kind():
    saved = JOB_KINDS.get("train_reward_model")
    register_job_kind("train_reward_model", f"{__name__}.leaky_handler")
    yield
    JOB_KINDS["train_reward_model"] = saved


@pytest.fixture
def failed(leaky_kind, caplog):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    job = Job.objects.create(kind="train_reward_model", params={}, project=project, created_by=researcher)
    RewardModel.objects.create(project=project, version=1, base_model="tiny", job_id=job.pk)
    with caplog.at_level(logging.ERROR, logger="prefloop.jobs.services"):
        run_job(job.pk)
    job.refresh_from_db()
    return job, project, researcher


def assert_no_traceback_or_path(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text and "leaky_handler" not in text, text
    assert str(settings.BASE_DIR) not in text and "site-packages" not in text, text


def test_a_failed_job_stores_the_message_with_server_folders_replaced(failed):
    job, _, _ = failed
    assert job.status == Job.Status.FAILED
    assert job.error.startswith("FileNotFoundError: [Errno 2] No such file or directory: '<server>/")
    assert job.error.endswith("/no-such-folder/weights.safetensors'")
    assert_no_traceback_or_path(job.error)


def test_the_traceback_goes_to_the_server_log(failed, caplog):
    job, _, _ = failed
    record = next(
        r for r in caplog.get_records("setup") if r.getMessage() == f"job {job.pk} (train_reward_model) failed"
    )
    logged = logging.Formatter().format(record)
    assert "Traceback" in logged and "_open_weights" in logged and str(MISSING) in logged


def test_the_api_and_the_reward_model_page_show_the_message_only(failed, api, client):
    job, project, researcher = failed
    body = api(researcher).get(f"/api/jobs/{job.pk}/").json()
    assert body["error"] == job.error
    assert_no_traceback_or_path(str(body))
    versions = api(researcher).get(f"/api/projects/{project.pk}/reward-models/").json()
    assert "FileNotFoundError" in str(versions)
    assert_no_traceback_or_path(str(versions))
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    assert "FileNotFoundError" in page
    assert_no_traceback_or_path(page)
