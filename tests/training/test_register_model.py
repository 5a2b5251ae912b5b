"""Registering a model folder from the Loop tab's form (and REST): what is validated, what is reported, what is refused."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from annotate.models import User
from rewards.ml.folders import ModelFolderError, inspect_model_folder
from tests.factories import make_project, make_user
from tests.model_folders import write_model_folder, write_safetensors
from training.models import Loop, Policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(settings, tmp_path):
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    researcher = make_user("res", role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    client = Client()
    client.force_login(researcher)
    return project, client, tmp_path / "models"


def post_form(client, project, path, name=""):
    response = client.post(f"/projects/{project.pk}/loop/models/", {"model_path": str(path), "name": name})
    assert response.status_code == 302 and response.url == f"/projects/{project.pk}/loop/"
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_loop_form_registers_a_folder_and_says_what_it_found(setup):
    project, client, root = setup
    folder = write_model_folder(root, "chat-sft", chat_template=True)
    messages = post_form(client, project, folder, name="my chat SFT")
    assert messages == [
        "Registered policy v1: LlamaForCausalLM, 0.1M parameters, vocabulary 1,000, "
        "max positions 2,048, chat template yes."
    ]
    policy = Policy.objects.get()
    assert (policy.name, policy.method, policy.status, policy.artifact_path) == (
        "my chat SFT",
        "base",
        "ready",
        str(folder),
    )
    found = policy.data["folder"]
    assert found["parameters"] == 1000 * 64 + 64 and found["architecture"] == "LlamaForCausalLM"
    assert found["chat_template"] is True and found["vocab_size"] == 1000 and found["max_positions"] == 2048
    assert Loop.objects.get(project=project).reference_id == policy.pk
    page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert f'action="/projects/{project.pk}/loop/models/"' in page and "chat template yes" in page


def test_a_folder_without_a_chat_template_says_no(setup):
    project, client, root = setup
    messages = post_form(
        client,
        project,
        write_model_folder(
            root, "gpt2", architecture="GPT2LMHeadModel", model_type="gpt2", config={"n_positions": 512}
        ),
    )
    assert messages[0].endswith("max positions 2,048, chat template no.")


@pytest.mark.parametrize("suffix", ["weights.npy", "scaler.joblib", "state.pkl", "model.pt", "pytorch_model.bin"])
def test_a_folder_holding_pickle_like_files_is_refused_at_registration(setup, suffix):
    project, client, root = setup
    folder = write_model_folder(root, "mixed", extra_files=(suffix,))
    messages = post_form(client, project, folder)
    assert len(messages) == 1 and "pickle-based files" in messages[0] and suffix in messages[0]
    assert str(root) not in messages[0] and str(folder) not in messages[0]
    assert not Policy.objects.exists() and not Loop.objects.exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda root: write_model_folder(root, "enc", architecture="BertForSequenceClassification"),
            "must name a causal-lm model",
        ),
        (lambda root: write_model_folder(root, "notok", tokenizer=False), "no tokenizer"),
        (lambda root: write_model_folder(root, "noweights", weights=False), "no .safetensors weights"),
        (lambda root: write_model_folder(root, "noarch", config={"architectures": []}), "found none"),
    ],
    ids=["encoder-architecture", "no-tokenizer", "no-safetensors", "no-architecture"],
)
def test_a_folder_that_is_not_a_usable_causal_lm_is_refused_by_reason(setup, make, message):
    project, client, root = setup
    messages = post_form(client, project, make(root))
    assert len(messages) == 1 and message in messages[0] and str(root) not in messages[0], messages
    assert not Policy.objects.exists()


def test_refusals_never_echo_the_model_root(setup, api, tmp_path):
    project, client, root = setup
    root.mkdir(parents=True, exist_ok=True)
    researcher = api(User.objects.get(username="res"))
    for value in ("/etc", f"{root}/../../etc", f"{root}/missing"):
        messages = post_form(client, project, value)
        assert str(root) not in messages[0] and str(tmp_path) not in messages[0], messages
        response = researcher.post(
            f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": value}, format="json"
        )
        assert response.status_code == 400 and str(tmp_path) not in response.content.decode()
    assert "PREFLOOP_MODEL_ROOTS" in post_form(client, project, "/etc")[0]


def test_a_corrupt_safetensors_header_is_refused(tmp_path):
    folder = write_model_folder(tmp_path, "bad", weights=False)
    (folder / "model.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ModelFolderError, match="bad header length"):
        inspect_model_folder(folder)
    write_safetensors(folder / "model.safetensors", {"w": [3, 2]})
    assert inspect_model_folder(folder).parameters == 6


def test_the_parameter_count_of_a_real_tiny_llama_matches_torch(tmp_path, minilm_tokenizer):
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "llama")
    minilm_tokenizer.save_pretrained(tmp_path / "llama")
    report = inspect_model_folder(tmp_path / "llama")
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert (report.architecture, report.vocab_size, report.max_positions, report.chat_template) == (
        "LlamaForCausalLM",
        len(minilm_tokenizer),
        256,
        False,
    )


@pytest.mark.parametrize(
    "raw, value, message",
    [(r"/models/a\u0000b", "/models/a\x00b", "NUL"), (r"/models/\ud800", "/models/\ud800", "valid Unicode")],
    ids=["nul", "lone-surrogate"],
)
def test_paths_no_file_system_accepts_are_a_clear_refusal_not_a_500(setup, api, raw, value, message):
    from rewards.errors import InvalidTrainingOptions
    from rewards.imports import check_reward_model_folder
    from training.errors import InvalidModelPath
    from training.policies import check_model_path

    project, client, root = setup
    researcher = api(User.objects.get(username="res"))
    for url, extra in (
        (f"/api/projects/{project.pk}/policies/", '"kind": "base", '),
        (f"/api/projects/{project.pk}/reward-models/import/", ""),
    ):
        body = "{" + extra + '"model_path": "' + raw + '"}'  # JSON escapes: what a client may really send
        assert researcher.post(url, body, content_type="application/json").status_code == 400
    with pytest.raises(InvalidModelPath, match=message):  # the forms reach the services without DRF's field checks
        check_model_path(value)
    with pytest.raises(InvalidTrainingOptions, match=message):
        check_reward_model_folder(value)
    if "\x00" in value:
        assert message in post_form(client, project, value)[0]
    assert not Policy.objects.exists()


@pytest.mark.parametrize(
    "name", ["weights.npy", "arrays.npz", "model.joblib", "state.pkl", "model.pt", "pytorch_model.bin"]
)
def test_the_loaders_and_base_model_check_refuse_the_same_files(settings, tmp_path, name):
    from rewards.errors import InvalidTrainingOptions
    from rewards.ml.artifact import UnsafeArtifact, check_safe
    from rewards.services import check_base_model

    settings.PREFLOOP_MODEL_ROOTS = [tmp_path]
    folder = write_model_folder(tmp_path, "rm", architecture="BertForSequenceClassification", extra_files=(name,))
    with pytest.raises(UnsafeArtifact, match="pickle-based files"):
        check_safe(folder)
    with pytest.raises(InvalidTrainingOptions, match="pickle-based files") as refused:
        check_base_model(str(folder))
    assert str(tmp_path) not in str(refused.value)
