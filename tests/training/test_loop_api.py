"""The training app's API and pages without models: permissions, validation, path checks, charts."""

from __future__ import annotations

import json

import pytest

from annotate.models import User
from tests.factories import make_project, make_user
from tests.model_folders import write_model_folder
from training.models import Loop, Policy, Round

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(api, settings, tmp_path):
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    settings.PREFLOOP_JOB_BACKEND = "db"
    researcher = make_user("res", role=User.Role.RESEARCHER)
    outsider = make_user("res2", role=User.Role.RESEARCHER)
    annotator = make_user("ann")
    project = make_project(researchers=[researcher], annotators=[annotator])
    make_project(researchers=[outsider])
    return project, api(researcher), api(outsider), api(annotator), tmp_path / "models"


def model_folder(root, name="sft", *, weights="model.safetensors"):
    if weights == "model.safetensors":
        return write_model_folder(root, name, architecture="GPT2LMHeadModel", model_type="gpt2")
    return write_model_folder(
        root, name, architecture="GPT2LMHeadModel", model_type="gpt2", weights=False, extra_files=(weights,)
    )


def test_only_the_projects_researchers_see_and_start_rounds(setup):
    project, researcher, outsider, annotator, _ = setup
    for client in (outsider, annotator):
        assert client.get(f"/api/projects/{project.pk}/rounds/").status_code == 404
        assert client.post(f"/api/projects/{project.pk}/rounds/", {"method": "dpo"}, format="json").status_code == 404
        assert client.get(f"/api/projects/{project.pk}/policies/").status_code == 404
        assert client.post(f"/api/projects/{project.pk}/policies/", {"kind": "demo"}, format="json").status_code == 404
    assert researcher.get(f"/api/projects/{project.pk}/rounds/").json() == []
    # No policy yet: a clear 409, nothing created.
    response = researcher.post(f"/api/projects/{project.pk}/rounds/", {"method": "dpo"}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "loop_not_ready"
    assert not Round.objects.exists()


def test_a_registered_model_folder_becomes_the_fixed_reference(setup):
    project, researcher, *_, root = setup
    folder = model_folder(root)
    response = researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(folder)}, format="json"
    )
    assert response.status_code == 201, response.content
    first = Policy.objects.get()
    assert first.status == "ready" and first.method == "base" and first.artifact_path == str(folder.resolve())
    second = model_folder(root, "other")
    researcher.post(f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(second)}, format="json")
    loop = Loop.objects.get(project=project)
    assert loop.reference_id == loop.current_id == first.pk  # the reference never moves
    assert researcher.get(f"/api/projects/{project.pk}/loop/").json()["reference_version"] == 1


@pytest.mark.parametrize(
    "path,message",
    [
        ("", "model_path is required"),
        ("relative/folder", "absolute path"),
        ("https://huggingface.co/gpt2", "URLs and hub ids are not fetched"),
        ("/etc", "must be inside"),
        ("{root}/../../etc", "must be inside"),
        ("{root}/missing", "not a model folder"),
        ("{root}/pickled", "pickle-based files"),
        ("{root}/escape", "must be inside"),
    ],
)
def test_model_paths_outside_the_roots_or_unsafe_are_refused(setup, tmp_path, path, message):
    project, researcher, *_, root = setup
    model_folder(root, "pickled", weights="pytorch_model.bin")
    outside = model_folder(tmp_path / "elsewhere", "real")
    (root / "escape").symlink_to(outside)
    response = researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": path.format(root=root)}, format="json"
    )
    assert response.status_code == 400 and message in response.json()["detail"], response.content
    assert not Policy.objects.exists() and not Loop.objects.exists()


@pytest.mark.parametrize(
    "body,message",
    [
        ({"method": "sft"}, "method"),
        ({"method": "dpo", "params": {"k": 0}}, "k must be between 1 and 16"),
        ({"method": "dpo", "params": {"temperature": "hot"}}, "temperature must be a float"),
        ({"method": "dpo", "params": {"pair_strategy": "best"}}, "pair_strategy must be one of"),
        ({"method": "dpo", "params": {"promtps": 3}}, "unknown round parameter(s) ['promtps']"),
        ({"method": "dpo", "params": {"update": {"betta": 0.1}}}, "update: unknown dpo option(s) ['betta']"),
        ({"method": "ppo", "params": {"update": {"lr": -1}}}, "update: lr must be positive"),
        ({"method": "dpo", "params": {"update": {"lora": {"r": 0}}}}, "update: lora.r must be an integer in [1, 256]"),
        (
            {"method": "best_of_n", "params": {"update": {"lora": {"rank": 8}}}},
            "update: unknown lora options: ['rank']",
        ),
        ({"method": "dpo", "params": {"reward_model": {"lora": {"dropout": 2}}}}, "lora.dropout must be in [0, 1)"),
    ],
)
def test_bad_round_parameters_name_the_field_and_create_nothing(setup, body, message):
    project, researcher, *_, root = setup
    researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(model_folder(root))}, format="json"
    )
    response = researcher.post(f"/api/projects/{project.pk}/rounds/", body, format="json")
    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json()), response.json()
    assert not Round.objects.exists()


def test_the_loop_page_draws_per_round_metrics_and_escapes_names(setup, client):
    project, researcher, outsider, *_, root = setup
    policy = Policy.objects.create(
        project=project,
        version=1,
        name="<script>window.x=1</script>",
        method="base",
        status="ready",
        artifact_path=str(root),
    )
    Loop.objects.create(project=project, reference=policy, current=policy)
    for n, (reward, kl, length) in enumerate([(0.1, 0.02, 20.0), (0.4, 0.3, 26.0)], start=1):
        Round.objects.create(
            project=project,
            number=n,
            method="dpo",
            state="done",
            policy=policy,
            metrics={
                "eval": {
                    "mean_reward": reward,
                    "kl_to_reference": kl,
                    "kl_to_reference_se": kl / 10,
                    "mean_length_tokens": length,
                    "win_rate_vs_previous": 0.6,
                    "win_rate_vs_reference": 0.7,
                },
                "eval_before": {"mean_reward": 0.0, "kl_to_reference": 0.0, "mean_length_tokens": 18.0},
            },
        )
    client.force_login(User.objects.get(username="res"))
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert "mean reward vs KL" in page and "<polyline" in page and "verbosity drift" in page
    assert page.count('class="chart-error"') == 2 and "± 0.06" in page  # the KL's ± 2 s.e. bars
    assert "<script>window.x=1</script>" not in page and "&lt;script&gt;window.x=1&lt;/script&gt;" in page
    client.force_login(User.objects.get(username="res2"))
    assert client.get(f"/projects/{project.pk}/loop/").status_code == 404


def test_starting_from_the_page_queues_the_sampling_job(setup, client):
    from prefloop.jobs.models import Job

    project, researcher, *_, root = setup
    researcher.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(model_folder(root))}, format="json"
    )
    client.force_login(User.objects.get(username="res"))
    response = client.post(
        f"/projects/{project.pk}/loop/rounds/", {"method": "ppo", "k": "3", "prompts": "5", "auto_advance": "on"}
    )
    assert response.status_code == 302
    round_ = Round.objects.get()
    assert round_.state == "sampling" and round_.method == "ppo" and round_.params["k"] == 3
    assert round_.params["auto_advance"] is True and round_.params["ai_feedback"] is False
    assert Job.objects.get(pk=round_.job_id).kind == "training.sample_round"
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert 'hx-trigger="every 2s"' in page and "Stop round" in page
    client.post(f"/projects/{project.pk}/loop/rounds/{round_.pk}/cancel/")
    round_.refresh_from_db()
    assert round_.state == "cancelled" and Job.objects.get(pk=round_.job_id).status == "cancelled"
