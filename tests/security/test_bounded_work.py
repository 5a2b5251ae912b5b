"""Bounded work: every job parameter has a bound (PREFLOOP_LIMITS), checked before anything is queued.

Issue 14: reward-model max_steps = 1e30 was accepted and ran; a demo policy of n_layer = n_embd =
1,000,000 was queued; 100,000 aspects were accepted. Each refusal is a 400 naming the field (in
`detail`, and in `field` where the API has one) and leaves every table as it was.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Project, User
from annotate.services.projects import project_create
from prefloop.limits import DEFAULT_LIMITS, OutOfBounds, check_limits, limit
from tests.factories import make_project, make_user
from tests.model_folders import write_model_folder
from tests.security.conftest import changed_tables, db_fingerprint
from training.params import RoundParams

pytestmark = pytest.mark.django_db


@pytest.fixture
def lab(api, settings, tmp_path):
    """A researcher's project with a registered base policy (a loop), jobs queued in the database."""
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    settings.PREFLOOP_JOB_BACKEND = "db"
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    folder = write_model_folder(tmp_path / "models", "sft", architecture="GPT2LMHeadModel", model_type="gpt2")
    client = api(researcher)
    response = client.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": str(folder)}, format="json"
    )
    assert response.status_code == 201, response.content
    return project, client


def refused(client, url, body, *, field: str, method: str = "post"):
    """POST (or PATCH) body; assert a 400 that names `field` and that no table changed."""
    before = db_fingerprint()
    response = getattr(client, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    text = json.dumps(response.json())
    assert field in text, text
    assert changed_tables(before, db_fingerprint()) == []
    return response.json()


# --- reward-model training -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, field",
    [
        ({"max_steps": 1e30}, "max_steps"),
        ({"max_steps": 10**9}, "max_steps"),
        ({"epochs": 10**6}, "epochs"),
        ({"batch_size": 10**6}, "batch_size"),
        ({"eval_batch_size": 10**7}, "eval_batch_size"),
        ({"grad_accum": 10**6}, "grad_accum"),
        ({"max_length": 10**6}, "max_length"),
        ({"max_train_pairs": 10**12}, "max_train_pairs"),
    ],
)
def test_reward_training_options_past_their_bound_are_refused_before_a_version_exists(lab, options, field):
    project, client = lab
    body = refused(client, f"/api/projects/{project.pk}/reward-models/", {"options": options}, field=field)
    assert body["error"] == "invalid_training_options" and body["field"] == field


def test_reward_default_options_past_their_bound_are_refused_too(lab):
    project, client = lab
    body = refused(
        client,
        f"/api/projects/{project.pk}/reward-settings/",
        {"default_options": {"max_steps": 1e30}},
        field="max_steps",
        method="patch",
    )
    assert body["field"] == "max_steps"


def test_the_train_command_refuses_max_steps_past_the_bound_and_writes_nothing(lab):
    project, _ = lab
    before = db_fingerprint()
    with pytest.raises(CommandError, match="max_steps"):
        call_command(
            "train_reward_model",
            "--project",
            str(project.pk),
            "--max-steps",
            str(10**9),
            stdout=StringIO(),
            stderr=StringIO(),
        )
    with pytest.raises(CommandError, match="epochs"):
        call_command(
            "train_reward_model",
            "--project",
            str(project.pk),
            "--epochs",
            str(10**6),
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert changed_tables(before, db_fingerprint()) == []


def test_a_deployment_can_lower_a_bound(lab, settings):
    project, client = lab
    settings.PREFLOOP_LIMITS = {"reward.max_steps": 10}
    body = refused(
        client, f"/api/projects/{project.pk}/reward-models/", {"options": {"max_steps": 11}}, field="max_steps"
    )
    assert "between 0 and 10" in body["detail"]
    response = client.post(f"/api/projects/{project.pk}/reward-models/", {"options": {"max_steps": 10}}, format="json")
    assert response.status_code == 202, response.content


# --- the demo policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, field",
    [
        ({"n_layer": 1_000_000}, "config.n_layer"),
        ({"n_embd": 1_000_000}, "config.n_embd"),
        ({"n_layer": 1_000_000, "n_embd": 1_000_000}, "config.n_layer"),
        ({"steps": 10**9}, "config.steps"),
        ({"batch_size": 10**6}, "config.batch_size"),
        ({"max_length": 10**6}, "config.max_length"),
        ({"steps": 1e30}, "config.steps"),
        ({"n_layer": -3}, "n_layer"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_a_demo_policy_past_its_bounds_is_refused_before_the_policy_or_its_job_exist(lab, config, field):
    project, client = lab
    body = refused(client, f"/api/projects/{project.pk}/policies/", {"kind": "demo", "config": config}, field=field)
    assert body["error"] == "invalid_round_params"


def test_a_demo_policy_within_its_bounds_is_queued(lab):
    from training.models import Policy

    project, client = lab
    response = client.post(
        f"/api/projects/{project.pk}/policies/", {"kind": "demo", "config": {"n_layer": 2, "n_embd": 64}}, format="json"
    )
    assert response.status_code == 202, response.content
    assert Policy.objects.filter(project=project, method="demo", status="queued").count() == 1


# --- rounds and their update methods ---------------------------------------------------------------


@pytest.mark.parametrize(
    "method, params, field",
    [
        ("dpo", {"k": 1000}, "k"),
        ("dpo", {"prompts": 10**6}, "prompts"),
        ("dpo", {"max_new_tokens": 10**6}, "max_new_tokens"),
        ("dpo", {"update": {"max_steps": 10**9}}, "update.max_steps"),
        ("dpo", {"update": {"batch_size": 10**6}}, "update.batch_size"),
        ("dpo", {"update": {"max_length": 10**6}}, "update.max_length"),
        ("dpo", {"update": {"max_steps": 1e30}}, "update.max_steps"),
        ("ppo", {"update": {"ppo_epochs": 10**6}}, "update.ppo_epochs"),
        ("ppo", {"update": {"mini_batch_size": 10**6}}, "update.mini_batch_size"),
        ("ppo", {"update": {"sampler": {"max_new_tokens": 10**6}}}, "update.sampler.max_new_tokens"),
        ("best_of_n", {"update": {"epochs": 10**6}}, "update.epochs"),
        ("best_of_n", {"update": {"n": 10**4}}, "update.n"),
        ("dpo", {"reward_model": {"max_steps": 1e30}}, "reward_model.max_steps"),
        ("dpo", {"reward_model": {"epochs": 10**6}}, "reward_model.epochs"),
    ],
)
def test_round_parameters_past_their_bounds_are_refused_before_the_round_or_its_job_exist(lab, method, params, field):
    project, client = lab
    body = refused(client, f"/api/projects/{project.pk}/rounds/", {"method": method, "params": params}, field=field)
    assert body["error"] == "invalid_round_params"
    if "." in field:
        assert body["field"] == field


def test_a_deployment_bound_on_k_applies_to_rounds(lab, settings):
    project, client = lab
    settings.PREFLOOP_LIMITS = {"round.k": 3}
    refused(client, f"/api/projects/{project.pk}/rounds/", {"method": "dpo", "params": {"k": 4}}, field="k")
    response = client.post(f"/api/projects/{project.pk}/rounds/", {"method": "dpo", "params": {"k": 3}}, format="json")
    assert response.status_code == 202, response.content


def test_the_loop_page_form_refuses_k_past_the_bound_and_says_so(lab, client):
    project, _ = lab
    client.force_login(User.objects.get(username="res"))
    before = db_fingerprint()
    response = client.post(
        f"/projects/{project.pk}/loop/rounds/", {"method": "dpo", "k": "1000", "prompts": "5"}, follow=True
    )
    assert response.status_code == 200
    assert "k must be between 1 and 16" in response.content.decode()
    assert changed_tables(before, db_fingerprint()) == []


@pytest.mark.parametrize(
    "args, field",
    [
        (["--k", "1000"], "k"),
        (["--prompts", str(10**6)], "prompts"),
        (["--max-new-tokens", str(10**6)], "max_new_tokens"),
        (["--update", f"max_steps={10**9}"], "update.max_steps"),
        (["--reward", f"max_steps={10**9}"], "reward_model: max_steps"),
    ],
)
def test_the_round_command_refuses_bounds_and_writes_nothing(lab, args, field):
    project, _ = lab
    before = db_fingerprint()
    with pytest.raises(CommandError, match=field):
        call_command(
            "run_round",
            "--project",
            str(project.pk),
            "--method",
            "dpo",
            "--enqueue",
            *args,
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert changed_tables(before, db_fingerprint()) == []


def test_round_defaults_match_the_round_parameters_own_bounds():
    for name, (_, high) in RoundParams.LIMITS.items():
        if f"round.{name}" in DEFAULT_LIMITS:
            assert DEFAULT_LIMITS[f"round.{name}"] == high, name


# --- aspects ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aspects",
    [
        [f"aspect-{i}" for i in range(100_000)],
        [f"a{i}" for i in range(DEFAULT_LIMITS["project.aspects"] + 1)],
        ["x" * 65],
        [""],
    ],
)
def test_too_many_or_too_long_aspects_are_refused_before_the_project_exists(api, aspects):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    body = refused(api(researcher), "/api/projects/", {"name": "many aspects", "aspects": aspects}, field="aspects")
    assert list(body) == ["aspects"]
    assert not Project.objects.filter(name="many aspects").exists()


def test_the_most_aspects_allowed_are_accepted(api):
    researcher = make_user("res", role=User.Role.RESEARCHER)
    aspects = [f"a{i:02d}" + "x" * 60 for i in range(DEFAULT_LIMITS["project.aspects"])]
    response = api(researcher).post("/api/projects/", {"name": "wide", "aspects": aspects}, format="json")
    assert response.status_code == 201, response.content
    assert Project.objects.get(name="wide").aspects == aspects


def test_the_service_refuses_too_many_aspects_whoever_calls_it(settings):
    from prefloop.core.errors import InvalidSetting

    settings.PREFLOOP_LIMITS = {"project.aspects": 2}
    with pytest.raises(InvalidSetting) as caught:
        project_create(name="three", aspects=["a", "b", "c"])
    assert caught.value.field == "aspects" and not Project.objects.filter(name="three").exists()


# --- the checker itself ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [1e30, float("inf"), float("nan"), "100", True, pytest.param(10**5000, id="5000-digits"), 100_001]
)
def test_only_whole_numbers_within_the_bound_pass(value):
    with pytest.raises(OutOfBounds) as caught:
        check_limits({"max_steps": value}, scope="reward")
    assert caught.value.field == "max_steps" and len(str(caught.value)) < 200


def test_unbounded_fields_and_none_pass_and_settings_override_defaults(settings):
    check_limits({"lr": 1e9, "max_steps": None, "max_length": 8192, "sampler": {"seed": 10**9}}, scope="reward")
    settings.PREFLOOP_LIMITS = {"reward.max_length": 128}
    assert limit("reward.max_length") == 128 and limit("reward.epochs") == DEFAULT_LIMITS["reward.epochs"]
