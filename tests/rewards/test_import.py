"""Bringing a reward model: an existing sequence-classification folder becomes a version, scored on the held-out votes."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client

from prefloop.jobs.context import JobContext
from prefloop.jobs.models import Job
from prefloop.jobs.services import run_job
from rewards import services
from rewards.imports import held_out_pairs
from rewards.job_kinds import IMPORT_REWARD_MODEL
from rewards.ml.config import RewardTrainConfig
from rewards.models import RewardModel
from tests.model_folders import write_model_folder
from tests.rewards.conftest import tiny_options

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="session")
def outside_reward_model(tmp_path_factory, minilm_tokenizer):
    """A tiny Llama reward model "trained elsewhere": random weights (seeded), one output, safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=1,
        pad_token_id=minilm_tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("outside-rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return folder


def expected_held_out(project):
    """The held-out pairs under the default split (eval_fraction 0.1, seed 0), computed directly."""
    config = RewardTrainConfig()
    filters = {"rule": "majority", "aspect": project.aspect_names[0]}
    _, held_out, _ = held_out_pairs(project, filters=filters, config=config)
    return held_out


def test_an_imported_folder_is_scored_on_the_held_out_votes_in_a_job(
    api, voted_project, outside_reward_model, model_dir
):
    from rewards.ml.score import RewardScorer

    project, researcher, _ = voted_project
    response = api(researcher).post(
        f"/api/projects/{project.pk}/reward-models/import/",
        {"model_path": str(outside_reward_model), "name": "from the lab"},
        format="json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    version = RewardModel.objects.get(pk=body["reward_model"]["id"])
    assert (version.status, version.trigger, version.base_model) == ("queued", "import", str(outside_reward_model))
    assert version.data_snapshot["imported"]["architecture"] == "LlamaForSequenceClassification"
    job = run_job(body["job_id"], ctx=JobContext())
    assert job.kind == IMPORT_REWARD_MODEL and job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == pytest.approx(1.0)
    version.refresh_from_db()
    assert version.status == "ready" and version.artifact_path == str(outside_reward_model)

    held_out = expected_held_out(project)
    assert 0 < len(held_out) < 40 and version.metrics["eval_pairs"] == len(held_out)
    assert version.data_snapshot["split"]["held_out"] == len(held_out)
    scorer = RewardScorer(outside_reward_model)
    chosen = scorer.score([p.prompt for p in held_out], [p.chosen for p in held_out])
    rejected = scorer.score([p.prompt for p in held_out], [p.rejected for p in held_out])
    wins = sum(c > r for c, r in zip(chosen, rejected)) + 0.5 * sum(c == r for c, r in zip(chosen, rejected))
    assert version.metrics["accuracy"] == pytest.approx(wins / len(held_out))


def test_a_ready_import_is_used_like_a_trained_version_and_warm_starts_the_next_retrain(
    voted_project, outside_reward_model, tiny_model_dir, model_dir
):
    from annotate.models import Completion
    from rewards.imports import register_reward_model
    from rewards.ml.score import RewardScorer

    project, researcher, _ = voted_project
    imported, job = register_reward_model(project=project, model_path=str(outside_reward_model), user=researcher)
    run_job(job.pk, ctx=JobContext())
    imported.refresh_from_db()
    services.mark_current(reward_model=imported)
    # Scoring (what pair selection, AI feedback, best-of-N and PPO call) reads the imported folder.
    completions = list(Completion.objects.filter(prompt__project=project).select_related("prompt").order_by("id")[:4])
    scores = services.score_completions(reward_model=imported, completion_ids=[c.pk for c in completions])
    direct = RewardScorer(outside_reward_model).score(
        [c.prompt.text for c in completions], [c.text for c in completions]
    )
    assert scores == pytest.approx(direct)
    # The next retrain starts from the imported weights: base_model is the folder, lineage points at the import.
    retrained, _ = services.request_training(project=project, options=tiny_options(outside_reward_model), enqueue=False)
    retrained = services.run_training(reward_model_id=retrained.pk)
    assert retrained.status == "ready" and retrained.parent_id == imported.pk
    assert retrained.base_model == str(outside_reward_model) and retrained.options["base_model"] == str(
        outside_reward_model
    )


def test_the_reward_model_page_has_a_form_that_registers_a_folder(voted_project, outside_reward_model, model_dir):
    project, researcher, _ = voted_project
    client = Client()
    client.force_login(researcher)
    page = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    assert f'action="/projects/{project.pk}/reward-models/import/"' in page
    response = client.post(f"/projects/{project.pk}/reward-models/import/", {"model_path": str(outside_reward_model)})
    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    job = Job.objects.get(kind=IMPORT_REWARD_MODEL)
    assert message == (
        f"Version 1 registered from LlamaForSequenceClassification (1.0M parameters); "
        f"scoring the held-out votes (job {job.pk})."
    )


def test_the_command_imports_a_folder_and_prints_its_metrics(voted_project, tiny_model_dir, model_dir, capsys):
    project, _, _ = voted_project
    call_command(
        "train_reward_model", "--project", project.name, "--import-folder", str(tiny_model_dir), "--make-current"
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    version = RewardModel.objects.get(pk=summary["reward_model_id"])
    assert version.is_current and version.trigger == "import" and version.artifact_path == str(tiny_model_dir)
    assert summary["metrics"]["architecture"] == "BertForSequenceClassification"
    assert summary["metrics"]["eval_pairs"] == len(expected_held_out(project))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: write_model_folder(root, "policy"), "must name a sequence-classification model"),
        (
            lambda root: write_model_folder(
                root,
                "two",
                architecture="LlamaForSequenceClassification",
                config={"id2label": {"0": "bad", "1": "good"}},
            ),
            "one output (num_labels 1)",
        ),
        (
            lambda root: write_model_folder(
                root, "pickled", architecture="LlamaForSequenceClassification", extra_files=("scaler.joblib",)
            ),
            "pickle-based files ['scaler.joblib']",
        ),
        (lambda root: "/etc", "must be inside one of the folders of PREFLOOP_MODEL_ROOTS"),
        (lambda root: "relative/rm", "absolute folder path"),
        (lambda root: "https://huggingface.co/x/rm", "nothing is downloaded"),
    ],
    ids=["causal-lm", "two-labels", "joblib", "outside", "relative", "url"],
)
def test_folders_that_are_not_reward_models_are_refused_and_create_nothing(api, voted_project, tmp_path, make, message):
    project, researcher, _ = voted_project
    path = make(tmp_path)
    response = api(researcher).post(
        f"/api/projects/{project.pk}/reward-models/import/", {"model_path": str(path)}, format="json"
    )
    assert response.status_code == 400 and message in response.json()["detail"], response.content
    assert str(tmp_path) not in response.content.decode()
    assert not RewardModel.objects.exists() and not Job.objects.exists()


def test_only_the_projects_researchers_may_import(api, voted_project, outside_reward_model):
    project, _, annotator = voted_project
    response = api(annotator).post(
        f"/api/projects/{project.pk}/reward-models/import/", {"model_path": str(outside_reward_model)}, format="json"
    )
    assert response.status_code == 404 and not RewardModel.objects.exists()
